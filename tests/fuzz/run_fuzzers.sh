#!/usr/bin/env bash
# tests/fuzz/run_fuzzers.sh BUILD SECONDS NAME...: runs each libFuzzer program
# BUILD/fuzz_<NAME> for SECONDS, one after the other, then prints the
# executions per target. Exits non-zero if any target found a crash, a hang or
# a sanitizer report.
#
# Seeds come from tests/fuzz/corpus/<NAME>/ (read only); inputs the fuzzer finds
# go to BUILD/fuzz-corpus/<NAME>/, so a later run continues from them. A failing
# input is saved as BUILD/fuzz-crashes/<NAME>/crash-* (or timeout-*, oom-*,
# leak-*): copy it into tests/fuzz/corpus/<NAME>/ once fixed, so ctest replays
# it forever (fuzz_<NAME>_corpus).
#
#   -timeout=1         an input taking more than 1 s counts as a hang
#   -rss_limit_mb=2048 and a single allocation above it count as out-of-memory:
#                      the readers must refuse absurd sizes before allocating
set -uo pipefail
build=$1 seconds=$2
shift 2
cd "$(dirname "$0")/../.."
summary="" failed=0
for name in "$@"; do
  corpus=$build/fuzz-corpus/$name crashes=$build/fuzz-crashes/$name log=$build/fuzz-$name.log
  mkdir -p "$corpus" "$crashes"
  echo "fuzz: $name for ${seconds}s (log $log)"
  OMP_NUM_THREADS=1 "$build/fuzz_$name" -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$crashes/" "$corpus" "tests/fuzz/corpus/$name" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  if [ $rc -ne 0 ]; then
    failed=1
    grep -E "^==[0-9]+==ERROR|SUMMARY|runtime error|Test unit written|fuzz: property" "$log" | head -n 8
    summary+=$(printf '%-12s FAILED (exit %d) after %s executions, input in %s\n' "$name" "$rc" "${execs:-?}" "$crashes")$'\n'
  else
    summary+=$(printf '%-12s ok: %s executions in %ss\n' "$name" "$execs" "$seconds")$'\n'
  fi
done
echo "fuzz summary:"
printf '%s' "$summary"
exit $failed
