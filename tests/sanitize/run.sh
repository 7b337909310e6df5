#!/usr/bin/env bash
# Sanitizer builds of the test suites (issue 15), each in its own tree, CUDA off:
#
#   tests/sanitize/run.sh asan [CTEST_ARGS...]  # AddressSanitizer + UndefinedBehaviorSanitizer +
#                                              # LeakSanitizer (gcc): the unit, MPI and Python
#                                              # tests and the soak (build-asan/)
#   tests/sanitize/run.sh tsan [GTEST_ARGS...]  # ThreadSanitizer: the threaded parts (build-tsan/):
#                                              # executor, local transport, asynchronous and
#                                              # hierarchical Communicator, injected faults, the
#                                              # codec's thread sweep
#
# Not under TSan: the gloo transport. Debian's libgloo is not instrumented, and TSan's
# pthread_cond_clockwait interceptor loses track of the mutexes of its condition variables: it
# reports "unlock of an unlocked mutex" inside libgloo and, in about one run of five, gloo's own
# connectFullMesh then crashes on a null pointer (never seen without TSan, in 300 runs of the
# test). qcomm drives each Gloo transport from one thread at a time; its Gloo tests run under ASan.
#
# Any report fails the run (halt_on_error / exitcode). Leaks inside Open MPI, hwloc and PMIx (one-off
# allocations of MPI_Init that the libraries never free) are suppressed by tests/sanitize/lsan.supp;
# leak checking is off for the Python tests (the interpreter keeps its objects at exit).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kind=${1:?usage: run.sh asan|tsan [ARGS...]}
shift
jobs=${QCOMM_SANITIZE_JOBS:-2}
common=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQCOMM_WITH_CUDA=OFF
        -DPython3_EXECUTABLE=/usr/bin/python3)
case $kind in
  asan)
    build=${QCOMM_SANITIZE_BUILD:-$root/build-asan}
    mkdir -p "$build"
    flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
    # The benchmarks too: their smoke tests (label mpi) and `qcomm sweep` (python) run them.
    cmake -S "$root" -B "$build" "${common[@]}" -DQCOMM_BUILD_BENCH=ON -DCMAKE_CXX_FLAGS="$flags" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
      -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" >"$build/configure.log" 2>&1 ||
      { tail -30 "$build/configure.log"; exit 1; }
    cmake --build "$build" -j "$jobs" >"$build/build.log" 2>&1 ||
      { grep -m20 -E "error" "$build/build.log"; exit 1; }
    # Whole allocation stacks (slower, but Open MPI's libraries have no frame pointers): a leak
    # report then shows the MPI_Init frames the suppressions name.
    export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:fast_unwind_on_malloc=0:malloc_context_size=40"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    export LSAN_OPTIONS="suppressions=$root/tests/sanitize/lsan.supp:print_suppressions=0"
    # Open MPI unloads its components at MPI_Finalize, and their leaks then come from an unknown
    # module that no suppression can name: keep them loaded.
    export OMPI_MCA_mca_base_component_disable_dlclose=1
    # The quarantine keeps freed memory resident: the soak's memory check means nothing here,
    # LeakSanitizer is its check.
    export QCOMM_SOAK_SLACK_MB=1024
    # The Python extension is instrumented: the interpreter needs the runtime preloaded, and
    # libstdc++ with it (or ASan cannot find the real __cxa_throw: the interpreter does not link
    # libstdc++, and the first C++ exception aborts).
    asan_rt="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
    # install_consumer builds a program against the installed library without the runtime.
    (cd "$build" && ctest -j "$jobs" --output-on-failure -L 'unit|mpi' -E 'cluster|install_consumer' "$@")
    (cd "$build" && ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" LD_PRELOAD="$asan_rt" \
       ctest -j 1 --output-on-failure -L python "$@")
    ;;
  tsan)
    build=${QCOMM_SANITIZE_BUILD:-$root/build-tsan}
    mkdir -p "$build"
    flags="-O1 -g -fno-omit-frame-pointer -fsanitize=thread"
    cmake -S "$root" -B "$build" "${common[@]}" -DQCOMM_BUILD_BENCH=OFF -DQCOMM_WITH_PYTHON=OFF \
      -DCMAKE_CXX_FLAGS="$flags" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" \
      >"$build/configure.log" 2>&1 || { tail -30 "$build/configure.log"; exit 1; }
    cmake --build "$build" -j "$jobs" --target qcomm_unit_tests \
      >"$build/build.log" 2>&1 || { grep -m20 -E "error" "$build/build.log"; exit 1; }
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
    filter='Executor.*:LocalTransport.*:Communicator.*:Hierarchical.*:Faults.*:QsgdCodec.SameWords*'
    "$build/tests/qcomm_unit_tests" --gtest_filter="$filter" "$@"
    ;;
  *) echo "run.sh: unknown sanitizer '$kind' (asan or tsan)" >&2; exit 2 ;;
esac
echo "sanitize $kind: clean"
