#!/usr/bin/env bash
# experiments/family/train.sh SIZE [TOKENS]: trains one dense model of issue 9's family on the
# Linux corpus (experiments/corpus; byte-level, vocab 256) at context 2048 on the GPU, in
# bfloat16 mixed precision, validating on the validation split (--val-data).
#
#   SIZE  d_model x layers   parameters   lr
#   s     256 x 8            ~3.5M        4e-3
#   m     512 x 8            ~13M         3e-3
#   l     768 x 12           ~43M         2e-3
#   xl    1024 x 12          ~78M         1.5e-3
#
# Every size sees the same TOKENS training tokens (default 100M, a third of an epoch of the
# train split), so that the family differs in size alone. A 30-step probe with the run's exact
# settings first measures tokens/s; plan.json records it, the steps (TOKENS / 32,768 tokens a
# step) and the projected minutes, and a plan over MAX_PLAN_MINUTES (default 25, the issue's
# bound) is refused before training starts.
#
# A run longer than one sitting: MAX_MINUTES=M stops training after M minutes (the trainer is
# killed; its last checkpoint, written every twentieth of the run, is complete by construction:
# train/train_state.h), and the same command again continues it with --resume. A finished run
# is marked by SIZE/done. Writes runs/family/SIZE/: plan.json, train.log, metrics.jsonl,
# curves.svg/.csv (simba curves) and checkpoint/ (sharded at 16 MiB, the Hugging Face layout).
#
# Environment: SIMBA (default build/simba), DATA (default data/linux-corpus/bin), DEVICE
# (default cuda), OUT (default runs/family), MAX_MINUTES (default: no limit), MAX_PLAN_MINUTES
# (default 25). SMOKE=1 checks the script itself in a minute on the CPU: context 128, batch 2, a
# 3-step probe, 2,560 tokens.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
size=${1:?usage: experiments/family/train.sh s|m|l|xl [TOKENS]}
tokens=${2:-100000000}
SIMBA=${SIMBA:-build/simba}
DATA=${DATA:-data/linux-corpus/bin}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-runs/family}
MAX_PLAN_MINUTES=${MAX_PLAN_MINUTES:-25}
case "$size" in
  s) d=256; layers=8; lr=4e-3 ;;
  m) d=512; layers=8; lr=3e-3 ;;
  l) d=768; layers=12; lr=2e-3 ;;
  xl) d=1024; layers=12; lr=1.5e-3 ;;
  *) echo "train.sh: SIZE must be s, m, l or xl, got '$size'" >&2; exit 2 ;;
esac
[[ $tokens =~ ^[1-9][0-9]*$ ]] || { echo "train.sh: TOKENS must be a positive integer, got '$tokens'" >&2; exit 2; }
[[ ${MAX_MINUTES:-1} =~ ^[1-9][0-9]*$ ]] || { echo "train.sh: MAX_MINUTES must be a positive integer, got '$MAX_MINUTES'" >&2; exit 2; }
context=2048; batch=16; probe_steps=30; dtype=bf16
if [ "${SMOKE:-0}" = 1 ]; then context=128; batch=2; probe_steps=3; DEVICE=cpu; dtype=fp32; tokens=2560; fi
for f in "$DATA/train.bin" "$DATA/validation.bin" "$SIMBA"; do
  [ -e "$f" ] || { echo "train.sh: '$f' is missing (bash experiments/corpus/unpack.sh; cmake --build build)" >&2; exit 2; }
done
run="$OUT/$size"
[ -e "$run/done" ] && { echo "train.sh: '$run' is a finished run: remove it to train again" >&2; exit 2; }
mkdir -p "$run"
# The model's shape (a new run only: --resume reads it from the checkpoint) and the run's settings
# (both: the checkpoint holds no device or data paths, and the rest must match it).
shape=(--hidden-size "$d" --layers "$layers")
settings=(--seq-len "$context" --batch-size "$batch" --lr "$lr" --dtype "$dtype" --device "$DEVICE"
          --data "$DATA/train.bin" --val-data "$DATA/validation.bin")
tokens_per_step=$((context * batch))

if [ ! -e "$run/plan.json" ]; then
  # 1. The probe: the same settings for a few steps, no validation, its tokens/s from the JSONL log.
  rm -rf "$run/probe"
  "$SIMBA" train "${shape[@]}" "${settings[@]}" --out "$run/probe" --steps "$probe_steps" --eval-every 0 --eval-batches 1 \
    --save-every 0 --log-every 1 > "$run/probe.log"
  python3 - "$run/probe/metrics.jsonl" "$tokens" "$tokens_per_step" "$(stat -c %s "$DATA/train.bin")" \
    "$MAX_PLAN_MINUTES" "$run/plan.json.tmp" <<'PY'
import json, statistics, sys
log, tokens, per_step, train_tokens, max_min, plan = sys.argv[1:7]
tokens, per_step, train_tokens, max_min = int(tokens), int(per_step), int(train_tokens), float(max_min)
rates = [r["tokens_per_sec"] for r in map(json.loads, open(log)) if "tokens_per_sec" in r]
rate = statistics.median(rates[len(rates) // 2:])  # the second half: past the first steps' warm-up
steps = max(tokens // per_step, 1)
minutes = steps * per_step / rate / 60
json.dump({"probe_tokens_per_sec": rate, "tokens_per_step": per_step, "steps": steps,
           "tokens": steps * per_step, "train_split_tokens": train_tokens,
           "epochs": steps * per_step / train_tokens, "projected_minutes": minutes}, open(plan, "w"), indent=1)
if minutes > max_min:
    sys.exit(f"train.sh: {steps} steps at the probe's {rate:.0f} tokens/s would take {minutes:.1f} minutes, "
             f"over MAX_PLAN_MINUTES={max_min:g}: give fewer TOKENS")
PY
  mv "$run/plan.json.tmp" "$run/plan.json"
  rm -rf "$run/probe"
fi
steps=$(python3 -c "import json; print(json.load(open('$run/plan.json'))['steps'])")
echo "family $size: d_model $d x $layers layers, context $context, batch $batch, $steps steps ($(tr -d '\n ' < "$run/plan.json"))"

# 2. The run (or its continuation): validation every tenth of it, checkpoints every twentieth,
#    sharded at 16 MiB.
args=(--out "$run" --steps "$steps" --eval-every $(( steps / 10 > 0 ? steps / 10 : 1 )) --eval-batches 8
      --save-every $(( steps / 20 > 0 ? steps / 20 : 1 )) --shard-size 16MiB)
if [ -e "$run/checkpoint" ]; then args=(--resume "${settings[@]}" "${args[@]}"); else args=("${shape[@]}" "${settings[@]}" "${args[@]}"); fi
limit=()
[ -n "${MAX_MINUTES:-}" ] && limit=(timeout "${MAX_MINUTES}m")
set +e
"${limit[@]}" "$SIMBA" train "${args[@]}" 2>&1 | tee -a "$run/train.log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" = 124 ]; then
  echo "train.sh: stopped after MAX_MINUTES=$MAX_MINUTES; run the same command again to continue from the last checkpoint"
  exit 3
fi
[ "$rc" = 0 ] || exit "$rc"
touch "$run/done"

# 3. The training curve as a plot: runs/family/SIZE/curves.svg and .csv.
"$SIMBA" curves --metrics "$run/metrics.jsonl" --labels "$size" --out "$run/curves" \
  --title "family $size: d_model $d x $layers layers, context $context"
