#!/usr/bin/env bash
# Killed and stalled ranks under mpirun (CTest label `mpi`): the other ranks must end the job
# non-zero, with a message that says what happened, within the timeout + 10 s.
#   fault_job_test.sh JOB [LAUNCHER...]   (default launcher: mpirun -np 4 on this machine)
# The cluster test passes `qcomm run --cluster NAME --np 4` as the launcher.
set -uo pipefail
job=$1
shift
launcher=("$@")
if [ ${#launcher[@]} -eq 0 ]; then
  launcher=(mpirun -np 4 --oversubscribe --mca btl self,vader)
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
fail() { echo "FAIL: $*"; exit 1; }

# case NAME TIMEOUT_S EXPECTED_REGEX JOB_ARGS...
case_() {
  local name=$1 timeout=$2 expect=$3
  shift 3
  local start end out rc
  start=$(date +%s%3N)
  out=$(timeout $((timeout + 60)) "${launcher[@]}" "$job" "$@" --timeout-ms $((timeout * 1000)) 2>&1)
  rc=$?
  end=$(date +%s%3N)
  local took=$((end - start))
  echo "== $name: exit $rc after ${took} ms"
  echo "$out" | grep -E "qcomm_fault_job|signal|DeadlineExceeded|aborted|noticed" | head -8
  [ "$rc" -ne 0 ] || fail "$name: the job ended with 0"
  [ "$rc" -ne 124 ] || fail "$name: the job hung (killed by timeout after $((timeout + 60)) s)"
  echo "$out" | grep -qE "$expect" || fail "$name: no message matching '$expect'"
  # The bound the issue sets: the job's timeout + 10 s (start-up included, which is generous).
  [ "$took" -lt $(((timeout + 10) * 1000)) ] || fail "$name: took $took ms (> $timeout s + 10 s)"
}

case_ "rank 2 killed with SIGKILL mid-training" 10 "signal 9|Killed|killed" \
  --mode kill --rank 2 --at-call 7
case_ "rank 3 stalled (alive, silent)" 3 "DeadlineExceeded.*rank 3 not heard from" \
  --mode stall --rank 3 --at-call 7
echo "fault job test passed"
