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
#   QCOMM_TSAN_GLOO_SOURCE=DIR tests/sanitize/run.sh tsan-gloo
#                                              # ThreadSanitizer over the Gloo transport's tests
#                                              # (build-tsan-gloo/), Gloo itself built instrumented
#                                              # from DIR
#
# The Gloo transport needs an instrumented Gloo: with Debian's (uninstrumented) libgloo, TSan's
# pthread_cond_clockwait interceptor loses track of the mutexes of Gloo's condition variables,
# reports "unlock of an unlocked mutex" inside libgloo and, in about one run of five, Gloo's
# connectFullMesh then crashes (never without TSan). Debian's mirror carries no source for it, so
# tsan-gloo takes a Gloo source tree: a checkout of facebookincubator/gloo at 5b14351, the commit
# Debian 12 packages (0.0~git20220518.5b14351). The script builds a copy of it with two build
# fixes for gcc 12 (a missing <array> include; the ETHTOOL_GLINKSETTINGS query, whose struct
# gcc 12 rejects, falls back to ETHTOOL_GSET) and runs qcomm_gloo_tests against it.
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
  tsan-gloo)
    source_dir=${QCOMM_TSAN_GLOO_SOURCE:?set QCOMM_TSAN_GLOO_SOURCE to a Gloo source tree (see the top of this script)}
    build=${QCOMM_SANITIZE_BUILD:-$root/build-tsan-gloo}
    flags="-O1 -g -fno-omit-frame-pointer -fsanitize=thread"
    mkdir -p "$build"
    rm -rf "$build/gloo-src" "$build/gloo-build" "$build/gloo"
    cp -r "$source_dir" "$build/gloo-src"
    sed -i '1i #include <array>' "$build/gloo-src/gloo/transport/tcp/device.cc"
    sed -i 's/^#if LINUX_VERSION_CODE >= KERNEL_VERSION(4,6,0)$/#if 0  \/\/ gcc 12 rejects the struct below/' \
      "$build/gloo-src/gloo/common/linux.cc"
    cmake -S "$build/gloo-src" -B "$build/gloo-build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DBUILD_SHARED_LIBS=ON -DUSE_REDIS=OFF -DUSE_IBVERBS=OFF -DUSE_NCCL=OFF -DUSE_LIBUV=OFF \
      -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" \
      -DCMAKE_INSTALL_PREFIX="$build/gloo" >"$build/gloo-configure.log" 2>&1 ||
      { tail -30 "$build/gloo-configure.log"; exit 1; }
    cmake --build "$build/gloo-build" -j "$jobs" --target install >"$build/gloo-build.log" 2>&1 ||
      { grep -m20 -E "error" "$build/gloo-build.log"; exit 1; }
    cmake -S "$root" -B "$build" "${common[@]}" -DQCOMM_BUILD_BENCH=OFF -DQCOMM_WITH_PYTHON=OFF \
      -DQCOMM_WITH_GLOO=ON -DGloo_DIR="$build/gloo/share/cmake/Gloo" -DCMAKE_CXX_FLAGS="$flags" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" \
      >"$build/configure.log" 2>&1 || { tail -30 "$build/configure.log"; exit 1; }
    cmake --build "$build" -j "$jobs" --target qcomm_gloo_tests \
      >"$build/build.log" 2>&1 || { grep -m20 -E "error" "$build/build.log"; exit 1; }
    ldd "$build/tests/qcomm_gloo_tests" | grep -q "$build/gloo/lib/libgloo" ||
      { echo "run.sh: qcomm_gloo_tests is not linked to the instrumented Gloo" >&2; exit 1; }
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
    "$build/tests/qcomm_gloo_tests" "$@"
    ;;
  *) echo "run.sh: unknown sanitizer '$kind' (asan, tsan or tsan-gloo)" >&2; exit 2 ;;
esac
echo "sanitize $kind: clean"
