#!/usr/bin/env bash
# experiments/finetune/compare.sh [SIZE ...]: the paired comparisons of the Simba-aware training
# experiment, from the per-window losses that experiments/finetune/run.sh wrote (it calls this
# script last; on its own it needs no GPU, model or data, only RESULTS/finetune_SIZE_*.json).
# At each context, `simba compare` on the same windows, paired bootstrap 95% intervals:
#   ft-simba simba  − base simba       Simba-aware against training-free Simba (the question)
#   ft-simba simba  − base dense       ... against the dense model it came from
#   ft-simba simba  − ft-dense dense   ... against the dense control's dense rows
#   ft-simba simba  − ft-dense simba   ... against training-free Simba on the dense control:
#                                      the same extra tokens, without pruning in training
#   ft-simba dense  − ft-dense dense   what pruned training does to the model run dense
#   ft-dense dense  − base dense       what the extra tokens alone give (the control's own gain)
#   ft-dense simba  − base simba       ... and to training-free Simba
# Writes RESULTS/finetune_SIZE_compare_C.csv and the tables to RESULTS/finetune_SIZE_compare.txt.
#
# Environment: SIMBA (default build/simba), RESULTS (default experiments/results), CONTEXTS
# (comma-separated, default 2048,8192: run.sh's; run.sh passes its own).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
SIMBA=${SIMBA:-build/simba}
RESULTS=${RESULTS:-experiments/results}
CONTEXTS=${CONTEXTS:-2048,8192}
[ $# -gt 0 ] || set -- l xl
[ -x "$SIMBA" ] || { echo "finetune/compare.sh: '$SIMBA' is not built (cmake --build build)" >&2; exit 2; }
# Each table is written beside its file and moved over it once complete: a failed comparison
# (a missing row, a context not evaluated) leaves the previous table as it was.
partial=""
trap 'rm -f "$partial"' EXIT
for size in "$@"; do
  r="$RESULTS/finetune_$size"
  for which in base ft-simba ft-dense; do
    [ -f "${r}_$which.json" ] || { echo "finetune/compare.sh: '${r}_$which.json' is missing (bash experiments/finetune/run.sh $size)" >&2; exit 2; }
  done
  partial="${r}_compare.txt.partial"
  : > "$partial"
  for c in ${CONTEXTS//,/ }; do
    "$SIMBA" compare --context "$c" --csv "${r}_compare_$c.csv" \
      --a "${r}_ft-simba.json:simba" --b "${r}_base.json:simba" \
      --a "${r}_ft-simba.json:simba" --b "${r}_base.json:dense" \
      --a "${r}_ft-simba.json:simba" --b "${r}_ft-dense.json:dense" \
      --a "${r}_ft-simba.json:simba" --b "${r}_ft-dense.json:simba" \
      --a "${r}_ft-simba.json:dense" --b "${r}_ft-dense.json:dense" \
      --a "${r}_ft-dense.json:dense" --b "${r}_base.json:dense" \
      --a "${r}_ft-dense.json:simba" --b "${r}_base.json:simba" | tee -a "$partial"
  done
  mv "$partial" "${r}_compare.txt"
done
