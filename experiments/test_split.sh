# experiments/test_split.sh: sourced by the scripts that evaluate the trained family on the test
# split (experiments/context/run.sh, experiments/recall/run.sh). Sets the shared environment
# defaults: SIMBA (build/simba), DATA (data/linux-corpus/bin), RUNS (runs/family), RESULTS
# (experiments/results), DEVICE (cuda), WINDOWS (64), BATCH (2); the array `sizes` (the
# script's arguments, default s m l xl); and model_dir SIZE, the checkpoint to evaluate (MODEL
# if set, for SMOKE=1 with any byte-level checkpoint, else RUNS/SIZE/checkpoint). Exits 2 with
# the command to run when the binary, the test split or a checkpoint is missing. The caller sets
# `script` (its name in messages) and applies SMOKE=1 after sourcing.
set -euo pipefail
SIMBA=${SIMBA:-build/simba}
DATA=${DATA:-data/linux-corpus/bin}
RUNS=${RUNS:-runs/family}
RESULTS=${RESULTS:-experiments/results}
DEVICE=${DEVICE:-cuda}
WINDOWS=${WINDOWS:-64}
BATCH=${BATCH:-2}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(s m l xl)
[ -x "$SIMBA" ] || { echo "$script: '$SIMBA' is not built (cmake --build build)" >&2; exit 2; }
[ -f "$DATA/test.bin" ] || { echo "$script: '$DATA/test.bin' is missing (bash experiments/corpus/unpack.sh)" >&2; exit 2; }
mkdir -p "$RESULTS"
model_dir() {
  local model=${MODEL:-$RUNS/$1/checkpoint}
  [ -d "$model" ] || { echo "$script: '$model' is missing (bash experiments/family/train.sh $1)" >&2; exit 2; }
  echo "$model"
}
