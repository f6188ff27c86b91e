#!/usr/bin/env bash
# experiments/finetune/run.sh [SIZE ...]: Simba-aware training of issue 9 (beyond the paper) for
# each trained model of the family (default: l xl, the two largest).
#
# Recipe. From runs/family/SIZE/checkpoint (simba train --init: its weights, a fresh optimiser),
# TOKENS (default 10M, 305 steps of 16 × 2048) more training tokens at a constant-then-cosine
# learning rate LR (default 3e-4, a fifth to a seventh of the family's peak; warmup a tenth,
# cosine to a tenth), bfloat16, two runs that differ in one thing:
#   SIZE-ft-simba  with pruning active: --simba keep=0.1,schedule=linear (the evaluation's setting);
#                  each window is split at c uniform in [1024, 2047] (--simba-min-context 1024), the
#                  context pruned as in evaluation and the loss taken on the continuation alone
#                  (train/trainer.h, Simba-aware training)
#   SIZE-ft-dense  the same steps, data order and learning rate without pruning: the control that
#                  separates "Simba-aware" from "trained longer"
# Then `simba eval --context 2048,8192` (m = 256, WINDOWS windows of the TEST split, keep 0.1
# linear) of the base model and of both fine-tuned models, and their comparisons on the same
# windows (experiments/finetune/compare.sh). Writes RESULTS/finetune_SIZE_{base,ft-simba,ft-dense}
# .json/.csv and the log to RESULTS/finetune_SIZE.txt; the runs go to RUNS/SIZE-ft-simba and
# RUNS/SIZE-ft-dense.
#
# Environment (read by experiments/test_split.sh): SIMBA, DATA, RUNS, RESULTS, DEVICE, WINDOWS,
# BATCH as there; TOKENS, LR; FT_RUNS (default RUNS), where the fine-tuned runs go: another
# recipe (another LR) of the same base model needs its own FT_RUNS and RESULTS. SMOKE=1 checks
# the script on the CPU in a minute: MODEL in place of every size, context 128, batch 2, 4 steps,
# m = 16, 4 windows (the runs go under RESULTS).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
script=finetune/run.sh
[ $# -gt 0 ] || set -- l xl
source experiments/test_split.sh "$@"
TOKENS=${TOKENS:-10000000}
LR=${LR:-3e-4}
seq=2048; batch=16; min_context=1024; contexts=2048,8192; m=256; dtype=bf16; ft_runs=${FT_RUNS:-$RUNS}
if [ "${SMOKE:-0}" = 1 ]; then
  seq=128; batch=2; min_context=64; contexts=128; m=16; WINDOWS=4; DEVICE=cpu; dtype=fp32; TOKENS=1024
  ft_runs=$RESULTS/finetune_smoke_runs
fi
steps=$(( TOKENS / (seq * batch) > 0 ? TOKENS / (seq * batch) : 1 ))
simba_opts=keep=0.1,schedule=linear,start=0
for size in "${sizes[@]}"; do
  base=$(model_dir "$size")
  : > "$RESULTS/finetune_$size.txt"
  for kind in simba dense; do
    run="$ft_runs/$size-ft-$kind"
    if [ -e "$run/checkpoint" ]; then
      echo "finetune/run.sh: '$run/checkpoint' exists: evaluating it as it is (remove $run to train again)"
      continue
    fi
    extra=()
    [ "$kind" = simba ] && extra=(--simba "$simba_opts" --simba-min-context "$min_context")
    echo "finetune/run.sh: $size, $kind fine-tuning from $base: $steps steps of $batch x $seq at lr $LR"
    "$SIMBA" train --init "$base" --out "$run" --data "$DATA/train.bin" --val-data "$DATA/validation.bin" \
      --steps "$steps" --batch-size "$batch" --seq-len "$seq" --lr "$LR" --dtype "$dtype" --device "$DEVICE" \
      --eval-every $(( steps / 4 > 0 ? steps / 4 : 1 )) --eval-batches 8 --save-every 0 --shard-size 16MiB \
      "${extra[@]}" | tee -a "$RESULTS/finetune_$size.txt"
  done
  for which in base ft-simba ft-dense; do
    model=$base
    [ "$which" = base ] || model="$ft_runs/$size-$which/checkpoint"
    "$SIMBA" eval --model "$model" --data "$DATA/test.bin" --val-fraction 1 --context "$contexts" \
      --continuation "$m" --max-windows "$WINDOWS" --batch "$BATCH" --simba "$simba_opts" --device "$DEVICE" \
      --json "$RESULTS/finetune_${size}_$which.json" --csv "$RESULTS/finetune_${size}_$which.csv" |
      tee -a "$RESULTS/finetune_$size.txt"
  done
done
CONTEXTS=$contexts SIMBA=$SIMBA RESULTS=$RESULTS bash experiments/finetune/compare.sh "${sizes[@]}"
