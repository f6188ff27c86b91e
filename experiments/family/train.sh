#!/usr/bin/env bash
# experiments/family/train.sh SIZE [BUDGET_MINUTES]: trains one dense model of issue 9's family on
# the Linux corpus (experiments/corpus; byte-level, vocab 256) at context 2048 on the GPU, in
# bfloat16 mixed precision, validating on the validation split (--val-data).
#
#   SIZE  d_model x layers   parameters   lr
#   s     256 x 8            ~3.5M        4e-3
#   m     512 x 8            ~13M         3e-3
#   l     768 x 12           ~43M         2e-3
#   xl    1024 x 12          ~78M         1.5e-3
#
# The token budget follows from the throughput measured here, not guessed: a 30-step probe with
# the run's exact settings, then steps = 0.9 x BUDGET_MINUTES (default 25) x tokens/s / tokens
# per step, at most two epochs of the train split. Writes runs/family/SIZE/: plan.json (the
# probe's tokens/s and the chosen steps), train.log, metrics.jsonl, curves.svg/.csv (simba curves)
# and checkpoint/ (sharded at 16 MiB, the Hugging Face layout).
#
# Environment: SIMBA (default build/simba), DATA (default data/linux-corpus/bin), DEVICE
# (default cuda), OUT (default runs/family). SMOKE=1 checks the script itself in a minute on
# the CPU: context 128, batch 2, a 3-step probe, a few steps.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
size=${1:?usage: experiments/family/train.sh s|m|l|xl [BUDGET_MINUTES]}
budget_min=${2:-25}
SIMBA=${SIMBA:-build/simba}
DATA=${DATA:-data/linux-corpus/bin}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-runs/family}
case "$size" in
  s) d=256; layers=8; lr=4e-3 ;;
  m) d=512; layers=8; lr=3e-3 ;;
  l) d=768; layers=12; lr=2e-3 ;;
  xl) d=1024; layers=12; lr=1.5e-3 ;;
  *) echo "train.sh: SIZE must be s, m, l or xl, got '$size'" >&2; exit 2 ;;
esac
context=2048; batch=16; probe_steps=30; dtype=bf16
if [ "${SMOKE:-0}" = 1 ]; then context=128; batch=2; probe_steps=3; DEVICE=cpu; dtype=fp32; fi
for f in "$DATA/train.bin" "$DATA/validation.bin" "$SIMBA"; do
  [ -e "$f" ] || { echo "train.sh: '$f' is missing (bash experiments/corpus/unpack.sh; cmake --build build)" >&2; exit 2; }
done
run="$OUT/$size"
[ -e "$run/checkpoint" ] && { echo "train.sh: '$run/checkpoint' exists: remove $run to train again" >&2; exit 2; }
mkdir -p "$run"
model=(--hidden-size "$d" --layers "$layers" --seq-len "$context" --batch-size "$batch" --lr "$lr"
       --dtype "$dtype" --device "$DEVICE" --data "$DATA/train.bin" --val-data "$DATA/validation.bin")

# 1. The probe: the same settings for a few steps, no validation, its tokens/s from the JSONL log.
rm -rf "$run/probe"
"$SIMBA" train "${model[@]}" --out "$run/probe" --steps "$probe_steps" --eval-every 0 --eval-batches 1 \
  --save-every 0 --log-every 1 > "$run/probe.log"
tokens_per_step=$((context * batch))
train_tokens=$(stat -c %s "$DATA/train.bin")
python3 - "$run/probe/metrics.jsonl" "$budget_min" "$tokens_per_step" "$train_tokens" "$run/plan.json" <<'PY'
import json, statistics, sys
log, budget_min, per_step, train_tokens, plan = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rates = [r["tokens_per_sec"] for r in map(json.loads, open(log)) if "tokens_per_sec" in r]
rate = statistics.median(rates[len(rates) // 2:])  # the second half: past the first steps' warm-up
steps = int(min(0.9 * budget_min * 60 * rate, 2 * train_tokens) // per_step)
json.dump({"probe_tokens_per_sec": rate, "budget_minutes": budget_min, "tokens_per_step": per_step,
           "steps": max(steps, 1), "tokens": max(steps, 1) * per_step, "train_tokens": train_tokens}, open(plan, "w"), indent=1)
PY
steps=$(python3 -c "import json; print(json.load(open('$run/plan.json'))['steps'])")
rm -rf "$run/probe"
echo "family $size: d_model $d x $layers layers, context $context, batch $batch, $steps steps ($(cat "$run/plan.json" | tr -d '\n '))"

# 2. The run: validation every tenth of it, checkpoints sharded at 16 MiB.
"$SIMBA" train "${model[@]}" --out "$run" --steps "$steps" --eval-every $(( steps / 10 > 0 ? steps / 10 : 1 )) \
  --eval-batches 8 --save-every $(( steps / 4 > 0 ? steps / 4 : 1 )) --shard-size 16MiB 2>&1 | tee "$run/train.log"

# 3. The training curve as a plot: runs/family/SIZE/curves.svg and .csv.
"$SIMBA" curves --metrics "$run/metrics.jsonl" --labels "$size" --out "$run/curves" \
  --title "family $size: d_model $d x $layers layers, context $context"
