#!/usr/bin/env bash
# experiments/run_size.sh SIZE [STEP ...]: everything issue 9 measures on one size of the family,
# in order, from the corpus to the results, resumable. One GPU call can rarely hold all of it (a
# call is limited to 10 minutes, and a model too large to bring back must be trained and
# evaluated on the same machine), so each finished step is marked and skipped when the same
# command runs again: after an interrupted call, the next continues with the first unfinished
# step (training itself continues from its last checkpoint).
#
# STEPs, in the order given (default: train flops context recall hf):
#   train     experiments/family/train.sh SIZE $TOKENS (MAX_MINUTES stops it; exit 3 then)
#   flops     experiments/flops/run.sh SIZE (RQ1 points, then simba frontier over all sizes)
#   context   experiments/context/run.sh SIZE (RQ2/RQ3)
#   recall    experiments/recall/run.sh SIZE (the recall probe)
#   hf        experiments/family/check_hf.sh SIZE (transformers loads the checkpoint)
#   highway   experiments/highway/run.sh SIZE (RQ4)
#   ablation  experiments/ablation/run.sh SIZE (criteria x schedules at equal FLOPs)
#   finetune  experiments/finetune/run.sh SIZE (Simba-aware training)
# A step is done when RESULTS/done/SIZE.STEP exists; each step's wall time is appended to
# RESULTS/timing_SIZE.txt. Environment: as the scripts (SIMBA, DATA, RUNS, RESULTS, DEVICE,
# WINDOWS, BATCH, ...), TOKENS (default 100000000), MAX_MINUTES (training only).
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root
size=${1:?usage: experiments/run_size.sh s|m|l|xl [train|flops|context|recall|hf|highway|ablation|finetune ...]}
shift
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(train flops context recall hf)
export RUNS=${RUNS:-runs/family} RESULTS=${RESULTS:-experiments/results}
mkdir -p "$RESULTS/done"
for step in "${steps[@]}"; do
  case "$step" in
    train) cmd=(env OUT="$RUNS" bash experiments/family/train.sh "$size" "${TOKENS:-100000000}") ;;
    flops | context | recall | highway | ablation | finetune) cmd=(bash "experiments/$step/run.sh" "$size") ;;
    hf) cmd=(bash experiments/family/check_hf.sh "$size") ;;
    *) echo "run_size.sh: unknown step '$step' (expected train, flops, context, recall, hf, highway, ablation or finetune)" >&2
       exit 2 ;;
  esac
  mark="$RESULTS/done/$size.$step"
  if [ -e "$mark" ]; then echo "run_size.sh: $size $step: done already ($mark)"; continue; fi
  start=$(date +%s)
  echo "run_size.sh: $size $step: ${cmd[*]}"
  set +e
  "${cmd[@]}"
  rc=$?
  set -e
  echo "$size $step rc $rc $(( $(date +%s) - start )) s $(date -u +%FT%TZ)" >> "$RESULTS/timing_$size.txt"
  [ "$rc" = 0 ] || { echo "run_size.sh: $size $step stopped with exit code $rc; run the same command again to continue" >&2; exit "$rc"; }
  touch "$mark"
done
