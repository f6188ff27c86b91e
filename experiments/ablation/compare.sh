#!/usr/bin/env bash
# experiments/ablation/compare.sh [SIZE ...]: the paired comparisons behind the ablation's verdicts,
# from the per-window losses that experiments/ablation/run.sh wrote (it calls this script last; on
# its own it needs no GPU, model or data, only RESULTS/ablation_SIZE_*.json). The grid's tables
# give every row against dense; a claim such as "Simba's criterion beats stride" needs the two
# rows against each other on the same windows (`simba compare`, paired bootstrap 95% intervals):
#   1. at each schedule and start layer, the simba criterion minus every other criterion;
#   2. the simba criterion at each schedule and start minus the paper's default (linear, start 0).
# Writes RESULTS/ablation_SIZE_compare_SCHEDULE_startS.csv (1),
# RESULTS/ablation_SIZE_compare_SCHEDULE_startS_vs_linear_start0.csv (2) and the tables to
# RESULTS/ablation_SIZE_compare.txt.
#
# Environment: SIMBA (default build/simba), RESULTS (default experiments/results), CONTEXT
# (default 4096, run.sh's; run.sh passes its own).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
SIMBA=${SIMBA:-build/simba}
RESULTS=${RESULTS:-experiments/results}
CONTEXT=${CONTEXT:-4096}
[ $# -gt 0 ] || set -- xl
[ -x "$SIMBA" ] || { echo "ablation/compare.sh: '$SIMBA' is not built (cmake --build build)" >&2; exit 2; }
others=(simba-abs simba-l2 random stride norm clip delta)
# Each table is written beside its file and moved over it once complete: a failed comparison
# (a missing row, a bad CONTEXT) leaves the previous table as it was.
partial=""
trap 'rm -f "$partial"' EXIT
for size in "$@"; do
  base="$RESULTS/ablation_${size}_linear_start0.json"
  [ -f "$base" ] || { echo "ablation/compare.sh: '$base' is missing (bash experiments/ablation/run.sh $size)" >&2; exit 2; }
  table="$RESULTS/ablation_${size}_compare.txt"
  partial="$table.partial"
  : > "$partial"
  # The grid's order: schedules as run.sh runs them, start layers ascending.
  configs=()
  for schedule in linear uniform inverted; do
    for f in $(ls "$RESULTS/ablation_${size}_${schedule}"_start*.json 2>/dev/null | sort -V); do
      name=$(basename "$f" .json)  # ablation_SIZE_SCHEDULE_startS
      configs+=("${name#"ablation_${size}_"}")
    done
  done
  for config in "${configs[@]}"; do
    f="$RESULTS/ablation_${size}_$config.json"
    a=() b=()
    for other in "${others[@]}"; do a+=(--a "$f:simba"); b+=(--b "$f:$other"); done
    echo "ablation/compare.sh: $size, $config: the simba criterion against each other criterion" | tee -a "$partial"
    "$SIMBA" compare --context "$CONTEXT" "${a[@]}" "${b[@]}" \
      --csv "$RESULTS/ablation_${size}_compare_$config.csv" | tee -a "$partial"
  done
  for config in "${configs[@]}"; do
    [ "$config" != linear_start0 ] || continue
    echo "ablation/compare.sh: $size: the simba criterion at $config against linear_start0" | tee -a "$partial"
    "$SIMBA" compare --context "$CONTEXT" --a "$RESULTS/ablation_${size}_$config.json:simba" --b "$base:simba" \
      --csv "$RESULTS/ablation_${size}_compare_${config}_vs_linear_start0.csv" | tee -a "$partial"
  done
  mv "$partial" "$table"
done
