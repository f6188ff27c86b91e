#!/usr/bin/env bash
# bench/run_cpu_comparison.sh: the CPU throughput comparison of bench/RESULTS.md,
# on a machine with more cores than the run uses (all runs pinned to 2 cores).
#
#   bash bench/run_cpu_comparison.sh OUTDIR [DEPS_ROOT] [MAMBAPY_DIR]
#
# Builds simba (Release), runs bench/bench_mamba and bench/pytorch_peers.py
# (transformers' MambaForCausalLM and, if MAMBAPY_DIR is given, mamba.py) under
# `taskset -c 0,1` with 2 threads each, and checks that transformers loads a
# checkpoint written by `simba train` with the same logits. DEPS_ROOT is where
# the Debian packages were unpacked with dpkg -x on a machine without apt.
set -euo pipefail
out=${1:?usage: run_cpu_comparison.sh OUTDIR [DEPS_ROOT] [MAMBAPY_DIR]}
deps=${2:-}
mambapy=${3:-}
mkdir -p "$out"
cmake_flags=(-DCMAKE_BUILD_TYPE=Release)
if [ -n "$deps" ]; then
  cmake_flags+=(-DSIMBA_DEPS_ROOT="$deps")
  export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:$deps/usr/lib/x86_64-linux-gnu/openblas-openmp:${LD_LIBRARY_PATH:-}"
fi
cmake -S . -B build-compare "${cmake_flags[@]}" > "$out/cmake.log"
cmake --build build-compare -j "$(nproc)" --target simba bench_mamba > "$out/build.log" 2>&1
lscpu | grep -E "Model name|^CPU\(s\)" > "$out/machine.txt"

cmake --build build-compare -j "$(nproc)" --target bench_sgemm >> "$out/build.log" 2>&1

# The other direction of Hugging Face parity: transformers reads what simba's trainer wrote.
run=/tmp/simba_parity_run
rm -rf "$run"
build-compare/simba train --data README.md --out "$run" --steps 30 --batch-size 4 --seq-len 64 \
  --hidden-size 64 --layers 2 --eval-every 0 --save-every 0 --val-fraction 0.2 > "$out/parity_train.txt"
python3 tests/fixtures/check_transformers_loads_simba.py --checkpoint "$run/checkpoint" --ids "$run/ids.safetensors" \
  --simba "$run/out.safetensors" --make-ids 2 40 256
build-compare/simba forward --model "$run/checkpoint" --ids "$run/ids.safetensors" --out "$run/out.safetensors"
python3 tests/fixtures/check_transformers_loads_simba.py --checkpoint "$run/checkpoint" --ids "$run/ids.safetensors" \
  --simba "$run/out.safetensors" 2>&1 | grep --line-buffered -v -i warn | tee "$out/parity_reverse.txt"

# Throughput, every program pinned to the same 2 cores. OpenBLAS picks its
# kernels by CPU model; inside some VMs it does not recognise the model and
# falls back to a generic kernel several times slower. OPENBLAS_CORETYPE (e.g.
# SkylakeX) overrides the choice; the core in use is recorded either way.
export OMP_NUM_THREADS=2
OPENBLAS_VERBOSE=2 build-compare/bench_sgemm --benchmark_filter=none 2>&1 | grep -i core | tee "$out/openblas_core.txt"
taskset -c 0,1 build-compare/bench_sgemm | tee "$out/bench_sgemm.txt"
taskset -c 0,1 build-compare/bench_mamba | tee "$out/bench_mamba.txt"
peer_args=(--threads 2 --seconds "${PEER_SECONDS:-5}" --runs "${PEER_RUNS:-transformers:infer,mamba.py:train,mamba.py:infer}")
[ -n "$mambapy" ] && peer_args+=(--mambapy "$mambapy")
PYTHONUNBUFFERED=1 taskset -c 0,1 python3 bench/pytorch_peers.py "${peer_args[@]}" 2>&1 \
  | grep --line-buffered -v -i warn | tee "$out/pytorch_peers.txt"
