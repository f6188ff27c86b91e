#!/usr/bin/env bash
# experiments/highway/run.sh [SIZE ...]: RQ4 of issue 9, "highways", for each trained model of the
# family (default: xl, the largest): per layer, the mean magnitude of what the token at distance
# T − t contributes to the anchor's SSM output (|Δy_T(t)|, docs/simba.md §1) against that
# distance, dense vs Simba (keep 0.1, linear) and dense vs the random-criterion control at the same
# schedule (`simba highway`, one plot each), over WINDOWS windows of CONTEXT tokens (default 8192)
# of the TEST split. Writes RESULTS/highway_SIZE_simba.{csv,svg} and RESULTS/highway_SIZE_random.
# {csv,svg}, and the tables to RESULTS/highway_SIZE.txt.
#
# Environment (read by experiments/test_split.sh): SIMBA, DATA, RUNS, RESULTS, DEVICE, WINDOWS,
# BATCH as there; CONTEXT. SMOKE=1 checks the script on the CPU in a minute: context 128, 4
# windows, and MODEL in place of every size.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
script=highway/run.sh
[ $# -gt 0 ] || set -- xl
source experiments/test_split.sh "$@"
CONTEXT=${CONTEXT:-8192}
if [ "${SMOKE:-0}" = 1 ]; then CONTEXT=128; WINDOWS=4; DEVICE=cpu; fi
for size in "${sizes[@]}"; do
  model=$(model_dir "$size")
  : > "$RESULTS/highway_$size.txt"
  for criterion in simba random; do
    echo "highway/run.sh: $size ($model), criterion $criterion, context $CONTEXT, $WINDOWS windows"
    "$SIMBA" highway --model "$model" --data "$DATA/test.bin" --val-fraction 1 --context "$CONTEXT" \
      --windows "$WINDOWS" --batch "$BATCH" --simba "keep=0.1,schedule=linear,criterion=$criterion" \
      --device "$DEVICE" --out "$RESULTS/highway_${size}_$criterion" | tee -a "$RESULTS/highway_$size.txt"
  done
done
