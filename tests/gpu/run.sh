#!/usr/bin/env bash
# The GPU check: builds the CUDA codec and its tests from this checkout (tests/gpu/CMakeLists.txt:
# no Boost, MPI or Python needed), runs the gpu tests and the kernel benchmark, and prints one table.
#
#   tests/gpu/run.sh [DEPS]
#
# DEPS (default: .deps in the repository, or $QCOMM_GPU_DEPS) holds googletest/, a copy of
# GoogleTest's sources (Debian: cp -r /usr/src/googletest .deps/). Needs nvcc (on PATH or in
# /usr/local/cuda), CMake >= 3.24 and a C++20 compiler. QCOMM_GPU_BENCH_MAX_LOG2 (default 28) bounds
# the benchmark sizes. Exit 0: all passed; 1: something failed; 77: no GPU here (nothing ran).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deps=${1:-${QCOMM_GPU_DEPS:-$root/.deps}}
build=${QCOMM_GPU_BUILD:-$root/build-gpu}
max_log2=${QCOMM_GPU_BENCH_MAX_LOG2:-28}
log=$build/run.log

if [[ ! -f $deps/googletest/CMakeLists.txt ]]; then
  echo "run.sh: no GoogleTest sources in $deps/googletest (copy /usr/src/googletest there)" >&2
  exit 1
fi
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[[ -x $nvcc ]] || { echo "run.sh: nvcc not found (PATH or /usr/local/cuda/bin)" >&2; exit 1; }
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
mkdir -p "$build"

echo "== configure and build ($build)"
if ! cmake -S "$root/tests/gpu" -B "$build" "${generator[@]}" -DCMAKE_CUDA_COMPILER="$nvcc" \
      -DQCOMM_GTEST_SOURCE="$deps/googletest" >"$log" 2>&1 ||
   ! cmake --build "$build" -j "$(nproc)" >>"$log" 2>&1; then
  tail -40 "$log"
  echo "run.sh: the build failed (full log: $log)" >&2
  exit 1
fi

rows=()
failed=0
run_tests() {  # name binary
  local out rc
  out=$("$build/$2" 2>&1)
  rc=$?
  echo "$out" | tail -25
  if [[ $rc == 77 ]]; then
    rows+=("| $1 | skipped: $(echo "$out" | grep -m1 SKIP) | | | | |")
    return 77
  fi
  local summary
  summary=$(echo "$out" | grep -E "^\[  (PASSED|FAILED)  \]" | tr '\n' ' ')
  if [[ $rc == 0 ]]; then rows+=("| $1 | PASS ${summary} | | | | |"); else
    rows+=("| $1 | FAIL (exit $rc) ${summary} | | | | |"); failed=1; fi
}

echo "== error-path tests"
run_tests "cuda error paths" qcomm_cuda_errors_test
echo "== the kernels on CPU threads (SIMT emulator) against the CPU codec"
run_tests "kernels under the SIMT emulator" qcomm_kernel_emulation_test
echo "== gpu tests (CUDA codec against the CPU codec)"
run_tests "gpu tests" qcomm_gpu_tests
gpu_rc=$?
if [[ -x $build/qcomm_gpu_pipeline_test ]]; then
  echo "== the GPU allreduce pipeline over NCCL on one GPU"
  run_tests "gpu pipeline (NCCL alone)" qcomm_gpu_pipeline_test
else
  rows+=("| gpu pipeline (NCCL alone) | not built: NCCL not found (set NCCL_ROOT) | | | | |")
fi
if [[ $gpu_rc == 77 ]]; then
  printf '%s\n' "${rows[@]}"
  echo "run.sh: no usable GPU on this machine; nothing was run on a device" >&2
  exit 77
fi
echo "== kernel benchmark"
bench=$("$build/qcomm_cuda_codec_bench" --min-log2 20 --max-log2 "$max_log2" 2>&1)
brc=$?
echo "$bench"
[[ $brc == 0 ]] || { failed=1; rows+=("| benchmark | FAIL (exit $brc) | | | | |"); }

echo
echo "== qcomm GPU check: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
echo "$bench" | grep '^#'
echo "| op | values | P | ms | GB/s | x copy |"
echo "| --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo "$bench" | grep -E '^\| (copy|encode|decode)'
exit $failed
