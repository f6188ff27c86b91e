#!/usr/bin/env bash
# train/demo.sh: the `make demo` run. Trains the default small Mamba (the
# demo config of train/trainer.h) on the King James Bible for a few minutes,
# then samples from it. It runs on the GPU when simba has the CUDA backend
# and a device is usable (--device auto: cuda:0), on the CPU otherwise, and
# says which.
#
#   bash train/demo.sh path/to/simba
#
# 1. data/kjv.txt: the whole KJV text from Debian's bible-kjv package
#    (`bible -l0 Gen1:1-Rev22:21`: -l0 turns off line wrapping, so the file
#    does not depend on the terminal width), made once and then reused.
# 2. runs/demo: a fresh training run (any earlier demo run is replaced), with
#    validation bits/byte before and after training.
# 3. 300 bytes generated from the trained model after "In the beginning".
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bash train/demo.sh path/to/simba" >&2
  exit 2
fi
[ -x "$1" ] || { echo "demo: '$1' is not an executable; build it first (make)" >&2; exit 1; }
SIMBA=$(realpath "$1")
cd "$(dirname "$0")/.."  # the repository root: data/ and runs/ live there

# 1000 steps (simba train's default) of 4,096 tokens, 1.06 epochs of the
# train split: on the CPU about 4 minutes at the ~17,500 tokens/s of two idle
# cores, so that `make demo`, build included, stays under 10 minutes.
# Validation bits/byte after it: 1.79 (8.00 before). Other processes busy on
# the same cores slow training several-fold. The GPU runs the same settings.
STEPS=${DEMO_STEPS:-1000}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

CORPUS=data/kjv.txt
MIN_BYTES=4000000  # the full text is about 4.3 MB; less means bible printed an error or a part
if [ ! -f "$CORPUS" ]; then
  command -v bible >/dev/null ||
    { echo "demo: the 'bible' program is missing; install the bible-kjv package (make deps)" >&2; exit 1; }
  mkdir -p data
  echo "demo: writing $CORPUS from the bible-kjv package"
  bible -l0 Gen1:1-Rev22:21 </dev/null >"$CORPUS.tmp"
  mv "$CORPUS.tmp" "$CORPUS"
fi
bytes=$(wc -c <"$CORPUS")
if [ "$bytes" -lt "$MIN_BYTES" ]; then
  echo "demo: $CORPUS has $bytes bytes, expected the whole Bible (> $MIN_BYTES); delete it and rerun" >&2
  exit 1
fi

RUN=runs/demo
rm -rf "$RUN"
mkdir -p "$RUN"
echo "demo: training for $STEPS steps on the GPU if one is usable, else on $OMP_NUM_THREADS CPU threads"
echo "demo: run directory $RUN"
start=$(date +%s)
"$SIMBA" train --data "$CORPUS" --out "$RUN" --steps "$STEPS" --eval-every 0 --save-every 0 --device auto |
  tee "$RUN/train.log"
seconds=$(($(date +%s) - start))
device=$(grep -m1 '^device:' "$RUN/train.log" | cut -d' ' -f2-)  # "cuda:0 (NVIDIA H200)" or "cpu"

echo
echo "demo: sample from $RUN/checkpoint:"
echo "------------------------------------------------------------------------"
"$SIMBA" generate --model "$RUN/checkpoint" --prompt "In the beginning" --tokens 300 --temperature 0.8 --device auto
echo
echo "------------------------------------------------------------------------"
before=$(grep -m1 '^validation bits/byte:' "$RUN/train.log" | awk '{print $3}')
after=$(grep '^validation bits/byte:' "$RUN/train.log" | tail -n1 | awk '{print $3}')
echo "demo: validation bits/byte before training: $before"
echo "demo: validation bits/byte after training:  $after   ($STEPS steps in ${seconds}s on $device)"
