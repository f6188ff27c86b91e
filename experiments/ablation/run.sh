#!/usr/bin/env bash
# experiments/ablation/run.sh [SIZE ...]: the ablations of issue 9 at equal FLOPs, for each trained
# model of the family (default: xl, the largest): every pruning criterion (simba, simba-abs,
# simba-l2, random, stride, norm, clip and delta, DeciMamba's |Δ|) under every schedule (linear,
# uniform, inverted = more pruning in the lower layers) and start layer (0, layers/4, layers/2).
#
# Equal FLOPs, not equal keep: each row's keep is solved (simba eval --flops-ratio, ssm/flops.h
# keep_for_flops_ratio) so that its forward FLOPs per window are nearest FLOPS_RATIO (default 0.85)
# of dense at that context; criteria cost different FLOPs to score and schedules spend their
# tokens differently, so at one keep they would not be comparable. One ratio serves every row, so
# it must be one that the least pruning configuration reaches: starting at layers/2, the linear
# schedule cannot go below 0.77 of dense at context 4096 on any size of the family even with one
# token left in each pruned layer (0.65 from layers/4; simba eval names the floor when a ratio is
# below it), hence 0.85. `simba eval --context` on the TEST split at context CONTEXT (default
# 4096, twice the trained length), m = 256, WINDOWS windows, the same windows for every row, every
# difference from dense with its paired 95% interval.
# Writes RESULTS/ablation_SIZE_SCHEDULE_startS.json and .csv, and the tables to
# RESULTS/ablation_SIZE.txt; then experiments/ablation/compare.sh pairs the rows against each
# other (the simba criterion against every other, each schedule and start against the default).
#
# Environment (read by experiments/test_split.sh): SIMBA, DATA, RUNS, RESULTS, DEVICE, WINDOWS,
# BATCH as there; FLOPS_RATIO, CONTEXT. SMOKE=1 checks the script on the CPU in a minute: context
# 128, m = 16, 4 windows, FLOPS_RATIO 0.8, and MODEL in place of every size.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
script=ablation/run.sh
[ $# -gt 0 ] || set -- xl
source experiments/test_split.sh "$@"
FLOPS_RATIO=${FLOPS_RATIO:-0.85}
CONTEXT=${CONTEXT:-4096}
m=256
if [ "${SMOKE:-0}" = 1 ]; then CONTEXT=128; m=16; WINDOWS=4; DEVICE=cpu; FLOPS_RATIO=0.8; fi
criteria=simba,simba-abs,simba-l2,random,stride,norm,clip,delta
for size in "${sizes[@]}"; do
  model=$(model_dir "$size")
  layers=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['num_hidden_layers'])" "$model/config.json")
  : > "$RESULTS/ablation_$size.txt"
  for schedule in linear uniform inverted; do
    for start in 0 $((layers / 4)) $((layers / 2)); do
      out="$RESULTS/ablation_${size}_${schedule}_start$start"
      echo "ablation/run.sh: $size ($model), schedule $schedule, start $start, FLOPs ratio $FLOPS_RATIO, context $CONTEXT, m = $m, $WINDOWS windows"
      "$SIMBA" eval --model "$model" --data "$DATA/test.bin" --val-fraction 1 --context "$CONTEXT" \
        --continuation "$m" --max-windows "$WINDOWS" --batch "$BATCH" --simba "schedule=$schedule,start=$start" \
        --criteria "$criteria" --flops-ratio "$FLOPS_RATIO" --device "$DEVICE" --json "$out.json" --csv "$out.csv" |
        tee -a "$RESULTS/ablation_$size.txt"
    done
  done
done
CONTEXT=$CONTEXT SIMBA=$SIMBA RESULTS=$RESULTS bash experiments/ablation/compare.sh "${sizes[@]}"
