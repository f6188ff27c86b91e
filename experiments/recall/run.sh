#!/usr/bin/env bash
# experiments/recall/run.sh [SIZE ...]: the long-range recall probe of issue 9 for each trained
# model of the family (experiments/family): the continuation loss on a 32-token span repeated
# from distance d = 64 … 32768 in a 32k-token context of the TEST split, dense vs Simba (keep
# 0.1, linear, start 0) vs random pruning at the same schedule, paired 95% intervals
# (`simba recall`, docs/simba.md). Writes RESULTS/recall_SIZE.{csv,json,svg} and the table to
# RESULTS/recall_SIZE.txt.
#
# Environment (read by experiments/test_split.sh): SIMBA (default build/simba), DATA (default
# data/linux-corpus/bin), RUNS (default runs/family), RESULTS (default experiments/results),
# DEVICE (default cuda), WINDOWS (default 64), BATCH (default 2). SMOKE=1 checks the script on the
# CPU in a minute: context 256, distances 16,64,256, m = 8, 4 windows, and MODEL in place of every
# size.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
script=recall/run.sh
source experiments/test_split.sh "$@"
context=32768
distances=64,128,256,512,1024,2048,4096,8192,16384,32768
m=32
if [ "${SMOKE:-0}" = 1 ]; then context=256; distances=16,64,256; m=8; WINDOWS=4; DEVICE=cpu; fi
for size in "${sizes[@]}"; do
  model=$(model_dir "$size")
  echo "recall/run.sh: $size ($model), context $context, distances $distances, m = $m, $WINDOWS windows"
  "$SIMBA" recall --model "$model" --data "$DATA/test.bin" --val-fraction 1 --context "$context" \
    --distances "$distances" --continuation "$m" --max-windows "$WINDOWS" --batch "$BATCH" \
    --simba keep=0.1,schedule=linear,start=0 --criteria simba,random --device "$DEVICE" \
    --out "$RESULTS/recall_$size" | tee "$RESULTS/recall_$size.txt"
done
