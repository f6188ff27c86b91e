#!/usr/bin/env bash
# experiments/flops/run.sh [SIZE ...]: RQ1 of issue 9, continuation loss against forward FLOPs,
# the points of each trained model of the family (experiments/family): dense, and Simba (linear
# schedule, start 0, the simba criterion) at keep rho = 0.05, 0.1, 0.2, 0.3 and 0.5.
#
# For each SIZE (default: s m l xl) and each rho, `simba eval --context` on the TEST split
# (test.bin, --val-fraction 1) at contexts 2048 (the trained length) and 8192, continuation
# m = 256, WINDOWS windows: the same windows for every size, context and rho (the window
# placement depends on the data, the context, m and WINDOWS alone), so that a Simba point of
# one model and the dense point of another can be compared window by window. Each file holds
# the dense rows and the pruned rows of one rho with their forward FLOPs per window. Writes
# RESULTS/flops_SIZE_keepRHO.json and .csv, and the tables to RESULTS/flops_SIZE.txt.
# Then, over every RESULTS/flops_*_keep*.json there (the sizes run so far, in this call or an
# earlier one), `simba frontier` at each context: RESULTS/frontier_CONTEXT.svg/.csv/.txt, every
# Simba point against the dense frontier and against the smallest dense model of at least its
# FLOPs, with paired 95% intervals.
#
# Environment (read by experiments/test_split.sh): SIMBA (default build/simba), DATA (default
# data/linux-corpus/bin), RUNS (default runs/family), RESULTS (default experiments/results),
# DEVICE (default cuda), WINDOWS (default 64), BATCH (default 2). SMOKE=1 checks the script on the
# CPU in a minute: context 128, m = 16, 4 windows, keep 0.1 and 0.5, and MODEL in place of every
# size.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
script=flops/run.sh
source experiments/test_split.sh "$@"
contexts=2048,8192
m=256
keeps=(0.05 0.1 0.2 0.3 0.5)
if [ "${SMOKE:-0}" = 1 ]; then contexts=128; m=16; WINDOWS=4; DEVICE=cpu; keeps=(0.1 0.5); fi
for size in "${sizes[@]}"; do
  model=$(model_dir "$size")
  : > "$RESULTS/flops_$size.txt"
  for keep in "${keeps[@]}"; do
    echo "flops/run.sh: $size ($model), keep $keep, contexts $contexts, m = $m, $WINDOWS windows"
    "$SIMBA" eval --model "$model" --data "$DATA/test.bin" --val-fraction 1 --context "$contexts" \
      --continuation "$m" --max-windows "$WINDOWS" --batch "$BATCH" \
      --simba "keep=$keep,schedule=linear,start=0,criterion=simba" --device "$DEVICE" \
      --json "$RESULTS/flops_${size}_keep$keep.json" --csv "$RESULTS/flops_${size}_keep$keep.csv" |
      tee -a "$RESULTS/flops_$size.txt"
  done
done
shopt -s nullglob
files=("$RESULTS"/flops_*_keep*.json)
for c in ${contexts//,/ }; do
  "$SIMBA" frontier --json "${files[@]}" --context "$c" --out "$RESULTS/frontier_$c" \
    --title "RQ1: continuation bits/byte against forward FLOPs, context $c + $m" | tee "$RESULTS/frontier_$c.txt"
done
