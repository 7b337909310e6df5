#!/usr/bin/env bash
# Fuzzes every target with libFuzzer (clang, AddressSanitizer + UndefinedBehaviorSanitizer):
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Builds a separate tree (build-fuzz/: the library without CUDA, MPI, Gloo or Python) and runs each
# target for SECONDS (default 60) on the committed corpus (tests/fuzz/corpus/NAME), which grows
# with what libFuzzer finds (new inputs are minimized into it with -merge=1). A crash leaves
# crash-* in build-fuzz/findings/NAME and fails the script: fix it, then add the input to the corpus.
# Prints one line per target: executions, coverage (cov/ft) and corpus size. QCOMM_FUZZ_TIMEOUT
# (seconds, default 10) is libFuzzer's per-input limit: raise it when the fuzzers share the
# machine with other work (a starved process reads as a timeout).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
seconds=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(wire decode_mean persist npy spec roundtrip)
build=${QCOMM_FUZZ_BUILD:-$root/build-fuzz}
mkdir -p "$build"
command -v clang++ >/dev/null || { echo "run.sh: clang++ not found (apt-get install clang)" >&2; exit 1; }
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fsanitize=fuzzer-no-link -g -O1"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$flags" -DBUILD_SHARED_LIBS=OFF -DQCOMM_FUZZ=ON -DQCOMM_WITH_CUDA=OFF \
  -DQCOMM_WITH_MPI=OFF -DQCOMM_WITH_GLOO=OFF -DQCOMM_WITH_PYTHON=OFF -DQCOMM_BUILD_BENCH=OFF \
  >"$build/configure.log" 2>&1 || { tail -30 "$build/configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/qcomm_fuzz_}" >"$build/build.log" 2>&1 ||
  { grep -m20 -E "error|Error" "$build/build.log"; exit 1; }
failed=0
for t in "${targets[@]}"; do
  corpus=$root/tests/fuzz/corpus/$t
  findings=$build/findings/$t
  mkdir -p "$corpus" "$findings" "$build/new/$t"
  log=$build/findings/$t.log
  # A forged size too large to allocate must become std::bad_alloc (an error), not an abort.
  (cd "$findings" && UBSAN_OPTIONS=print_stacktrace=1 ASAN_OPTIONS=allocator_may_return_null=1 \
      "$build/tests/fuzz/qcomm_fuzz_$t" -max_total_time="$seconds" -timeout="${QCOMM_FUZZ_TIMEOUT:-10}" -rss_limit_mb=4096 \
      -malloc_limit_mb=65536 -print_final_stats=1 \
      "$build/new/$t" "$corpus" >"$log" 2>&1)
  rc=$?
  # Keep what widened coverage, minimized, in the committed corpus.
  "$build/tests/fuzz/qcomm_fuzz_$t" -merge=1 "$corpus" "$build/new/$t" >/dev/null 2>&1
  execs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "$log" | grep -o "[0-9]*$")
  cov=$(grep -E "^#[0-9]+.*(DONE|pulse|NEW|REDUCE)" "$log" | tail -1 | grep -o "cov: [0-9]* ft: [0-9]*")
  printf "%-12s rc=%d execs=%s %s corpus=%d files\n" "$t" "$rc" "${execs:-?}" "${cov:-?}" \
    "$(ls "$corpus" | wc -l)"
  if [[ $rc -ne 0 ]]; then
    failed=1
    grep -m5 -E "ERROR|broken promise|runtime error" "$log"
    ls "$findings"/crash-* "$findings"/timeout-* "$findings"/oom-* 2>/dev/null
  fi
done
exit $failed
