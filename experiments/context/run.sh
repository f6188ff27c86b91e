#!/usr/bin/env bash
# experiments/context/run.sh [SIZE ...]: RQ2/RQ3 of issue 9, continuation loss against the
# context length, dense vs Simba, for each trained model of the family (experiments/family).
#
# For each SIZE (default: s m l xl) it runs `simba eval --context` on the TEST split
# (test.bin, --val-fraction 1: the whole file) at contexts 1k, 2k, 4k, 8k, 16k, 32k and 64k
# tokens (the family was trained at 2k), continuation m = 256, the same WINDOWS windows at every
# context and for every method, dense vs Simba (keep 0.1, linear, start 0) and random pruning
# as the control, every difference with its paired bootstrap 95% interval. Writes
# RESULTS/context_SIZE.json (rows with every window's loss) and .csv, and the table to
# RESULTS/context_SIZE.txt. Then `simba contexts` over every RESULTS/context_*.json there (the sizes
# run so far): RESULTS/contexts.svg/.csv/.txt, each model's rows minus its dense rows against the
# context length, all sizes in one table and one plot.
#
# Environment (read by experiments/test_split.sh): SIMBA (default build/simba), DATA (default
# data/linux-corpus/bin), RUNS (default runs/family: RUNS/SIZE/checkpoint), RESULTS (default
# experiments/results), DEVICE (default cuda), WINDOWS (default 64), BATCH (default 2). SMOKE=1
# checks the script on the CPU in a minute: contexts 64 and 128, m = 16, 4 windows, and MODEL (a
# checkpoint directory, e.g. the make demo one) in place of every size.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
script=context/run.sh
source experiments/test_split.sh "$@"
contexts=1024,2048,4096,8192,16384,32768,65536
m=256
if [ "${SMOKE:-0}" = 1 ]; then contexts=64,128; m=16; WINDOWS=4; DEVICE=cpu; fi
for size in "${sizes[@]}"; do
  model=$(model_dir "$size")
  echo "context/run.sh: $size ($model), contexts $contexts, m = $m, $WINDOWS windows"
  "$SIMBA" eval --model "$model" --data "$DATA/test.bin" --val-fraction 1 --context "$contexts" \
    --continuation "$m" --max-windows "$WINDOWS" --batch "$BATCH" --simba keep=0.1,schedule=linear,start=0 \
    --criteria simba,random --device "$DEVICE" --json "$RESULTS/context_$size.json" \
    --csv "$RESULTS/context_$size.csv" | tee "$RESULTS/context_$size.txt"
done
shopt -s nullglob
files=("$RESULTS"/context_*.json)
"$SIMBA" contexts --json "${files[@]}" --out "$RESULTS/contexts" \
  --title "RQ2/RQ3: continuation bits/byte minus dense against the context (trained at 2048), m = $m" |
  tee "$RESULTS/contexts.txt"
