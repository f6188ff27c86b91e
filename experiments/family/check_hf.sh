#!/usr/bin/env bash
# experiments/family/check_hf.sh [SIZE ...]: acceptance 6 of issue 9 for the family's sharded
# checkpoints: transformers' MambaForCausalLM loads runs/family/SIZE/checkpoint (the Hugging Face
# layout: model-0000k-of-0000n.safetensors + model.safetensors.index.json) and its logits on
# 2 x 512 random byte ids agree with `simba forward` (float32, on the CPU) within 1e-4 of the
# largest logit (tests/fixtures/check_transformers_loads_simba.py). Writes RESULTS/hf_SIZE.txt;
# exits non-zero if a size disagrees. Needs python3 with torch, safetensors and transformers.
#
# Environment (read by experiments/test_split.sh): SIMBA, DATA, RUNS, RESULTS as there.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
script=family/check_hf.sh
source experiments/test_split.sh "$@"
check=tests/fixtures/check_transformers_loads_simba.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$check" --make-ids 2 512 256 --ids "$tmp/ids.safetensors" --checkpoint - --simba -
status=0
for size in "${sizes[@]}"; do
  model=$(model_dir "$size")
  shards=$(find "$model" -maxdepth 1 -name 'model-*-of-*.safetensors' | wc -l)  # 0: one model.safetensors
  "$SIMBA" forward --model "$model" --ids "$tmp/ids.safetensors" --out "$tmp/simba_$size.safetensors" --device cpu
  { echo "check_hf.sh: $size ($model, $shards shards)"
    python3 "$check" --checkpoint "$model" --ids "$tmp/ids.safetensors" --simba "$tmp/simba_$size.safetensors"
  } 2>&1 | tee "$RESULTS/hf_$size.txt" || status=1
done
exit "$status"
