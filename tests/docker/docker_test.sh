#!/usr/bin/env bash
# Docker cluster test (CTest label `docker`): 4 containers as hosts on 1 Gbit/s links, the same
# suite as the namespace cluster test across them (MPI tests at -np 4, the 64 MB benchmark with
# #wrong 0 and sra faster than MPI_Allreduce, the digits example with --check, killed and stalled
# ranks), then `docker kill` of one container mid-run, an engine crash, and teardowns that must
# leave nothing behind.
# Usage: docker_test.sh QCOMM_BIN BUILD_DIR SOURCE_DIR. Skips (exit 77) unless root with docker.
set -euo pipefail
qcomm=$1
build=$2
source=$3
name=qdci
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: the docker tests need root"; exit 77; fi
for tool in docker dockerd ip tc; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed (docker.io, iproute2)"; exit 77; }
done
source "$source/tests/cluster/checks.sh"
started=$SECONDS
stamp() { echo "== [$((SECONDS - started)) s] $*"; }

# The engine: the system's, or qcomm's own (state and image cache under /run/qcomm/docker).
if ! DOCKER_HOST=$("$qcomm" cluster engine 2>/tmp/qcomm-docker-engine.err); then
  if grep -q "did not answer" /tmp/qcomm-docker-engine.err; then
    echo "SKIP: dockerd cannot start here: $(tail -3 /tmp/qcomm-docker-engine.err)"; exit 77
  fi
  cat /tmp/qcomm-docker-engine.err; fail "no Docker engine"
fi
export DOCKER_HOST
own=0
[ "$DOCKER_HOST" != "unix:///run/qcomm/docker/docker.sock" ] || own=1
cleanup() { "$qcomm" cluster down "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

stamp "image qcomm:node (built once per machine, then Docker's cache)"
"$source/docker/build_images.sh" --node

extra_leftovers() {  # prefix: containers, and qcomm's dockerd with its mounts
  if docker info >/dev/null 2>&1; then docker ps -aq --filter "label=qcomm.cluster=$1"; fi
  if [ "$own" -eq 1 ]; then
    if [ -e /run/qcomm/docker/dockerd.pid ] &&
       kill -0 "$(cat /run/qcomm/docker/dockerd.pid)" 2>/dev/null; then echo "qcomm's dockerd"; fi
    grep -o " /run/qcomm/docker/[^ ]*" /proc/mounts || true
  fi
}

stamp "4 containers on 1 Gbit/s links"
"$qcomm" cluster down "$name" >/dev/null 2>&1 || true   # leftovers of an interrupted run
"$qcomm" cluster up 4 --docker --image qcomm:node --link 1gbit --prefix "$name" --subnet 10.231.93
status=$("$qcomm" cluster status "$name")
echo "$status"
[ "$(echo "$status" | grep -c " Up ")" -eq 4 ] || fail "status does not show 4 running containers"

stamp "mpirun tests across 4 containers"
"$qcomm" run --cluster "$name" --np 4 "$build/tests/qcomm_mpi_tests"

stamp "allreduce benchmark at 64 MB across 4 containers"
json=$(mktemp --suffix .json)
out=$("$qcomm" bench allreduce --cluster "$name" --np 4 -b 64M -e 64M -n 2 -w 1 \
      --algorithms mpi,allgather,sra --json "$json")
echo "$out"
expect_bench_rows "$out" "mpi " "allgather " "sra "
echo "$out" | awk '$10 == "mpi" { m = $6 } $10 == "sra" { s = $6 } END { exit !(s > 0 && s < m) }' ||
  fail "sra was not faster than MPI_Allreduce at 64 MB"
grep -q '"algorithm": "sra"' "$json" || fail "--json did not come back from container 0"
rm -f "$json"

stamp "qcomm sweep --cluster on the containers"
sweep_dir=$(mktemp -d)
cat >"$sweep_dir/tiny.toml" <<'TOML'
[sweep]
name = "docker"
links = ["local"]
ranks = [4]
sizes = ["1M"]
bits = [4]
algorithms = ["sra"]
iters = 1
warmup = 0
TOML
"$qcomm" sweep "$sweep_dir/tiny.toml" --cluster "$name" --out "$sweep_dir/out" | tail -1
grep -q "^$name,4,1048576,.*,sra," "$sweep_dir/out/results.csv" ||
  { cat "$sweep_dir/out/results.csv"; fail "the sweep has no sra row labelled with the cluster"; }
rm -rf "$sweep_dir"

stamp "digits example with --check across 4 containers"
"$qcomm" run --cluster "$name" --np 4 "$build/bin/qcomm_digits_example" \
  --data "$build/examples/digits.bin" --epochs 10 --check | tail -2

stamp "a rank killed (SIGKILL) or stalled mid-training across 4 containers"
"$source/tests/mpi/fault_job_test.sh" "$build/tests/qcomm_fault_job" \
  "$qcomm" run --cluster "$name" --np 4 || fail "killed-rank test across the containers"

stamp "qcomm run interrupted (SIGINT): mpirun in container 0 ends too"
log=$(mktemp)
"$qcomm" run --cluster "$name" --np 4 "$build/tests/qcomm_fault_job" --mode kill --rank 99 \
  --at-call 0 --calls 100000000 --timeout-ms 30000 >"$log" 2>&1 &
job=$!
sleep 4
kill -INT "$job"
rc=0
wait "$job" || rc=$?
grep -E "^qcomm run" "$log" || true
[ "$rc" -eq 130 ] || { tail "$log"; fail "qcomm run exited $rc after SIGINT, not 130"; }
for _ in $(seq 20); do
  docker exec "$name-h0" pgrep -x mpirun >/dev/null || break
  sleep 0.5
done
if docker exec "$name-h0" pgrep -x mpirun >/dev/null; then fail "mpirun still runs in $name-h0"; fi
rm -f "$log"

stamp "docker kill of one container mid-run"
log=$(mktemp)
t0=$(date +%s)
"$qcomm" run --cluster "$name" --np 4 "$build/tests/qcomm_fault_job" --mode kill --rank 99 \
  --at-call 0 --calls 100000000 --timeout-ms 30000 >"$log" 2>&1 &
job=$!
sleep 5
kill -0 "$job" 2>/dev/null || { cat "$log"; fail "the long job ended before the kill"; }
docker kill "$name-h2" >/dev/null
t1=$(date +%s)
rc=0
for _ in $(seq 60); do kill -0 "$job" 2>/dev/null || break; sleep 1; done
if kill -0 "$job" 2>/dev/null; then kill "$job"; cat "$log"; fail "the job still runs 60 s after docker kill"; fi
wait "$job" || rc=$?
echo "exit $rc $(( $(date +%s) - t1 )) s after the kill"
grep -E "^qcomm run" "$log"
[ "$rc" -ne 0 ] || fail "the job ended with 0 after a container was killed"
grep -q "container $name-h2 (host 2, 10.231.93.3) is exited" "$log" ||
  { tail -20 "$log"; fail "the error does not name the killed container"; }
rm -f "$log"

stamp "teardown"
"$qcomm" cluster down "$name"
trap - EXIT
expect_clean "$name" "teardown after docker kill"

if [ "$own" -eq 1 ]; then
  stamp "qcomm's dockerd killed (kill -9) under a running cluster: down still cleans up"
  name=qdcr
  trap cleanup EXIT
  "$qcomm" cluster up 2 --docker --image qcomm:node --link 1gbit --prefix "$name" --subnet 10.231.94
  kill -9 "$(cat /run/qcomm/docker/dockerd.pid)"
  sleep 1
  "$qcomm" cluster down "$name"
  trap - EXIT
  expect_clean "$name" "down after an engine crash"
  # containerd's shims of the killed engine's containers must be gone too.
  if pgrep -f "containerd-shim.*-namespace moby" >/dev/null; then
    fail "containerd shims left: $(pgrep -af containerd-shim)"
  fi
fi
stamp "docker cluster test passed"
