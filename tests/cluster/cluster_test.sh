#!/usr/bin/env bash
# Cluster test (CTest label `cluster`): 4 emulated hosts on 1 Gbit/s links; the mpirun tests and
# the allreduce benchmark run across them; teardown must leave no namespace, link or process.
# Usage: cluster_test.sh QCOMM_BIN BUILD_DIR. Skips (exit 77) unless root with iproute2.
set -euo pipefail
qcomm=$1
build=$2
name=qcci
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: the cluster tests need root (network namespaces)"; exit 77; fi
if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
  echo "SKIP: ip/tc (iproute2) not installed"; exit 77
fi
cleanup() { "$qcomm" cluster down "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
source "$(dirname "$0")/checks.sh"

"$qcomm" cluster down "$name" >/dev/null 2>&1 || true   # leftovers of an interrupted run
"$qcomm" cluster up 4 --link 1gbit --prefix "$name" --subnet 10.231.78
"$qcomm" cluster status "$name" | grep -q "4 namespaces" || fail "status does not show 4 namespaces"

echo "== mpirun tests across 4 emulated hosts"
"$qcomm" run --cluster "$name" --np 4 "$build/tests/qcomm_mpi_tests"

echo "== allreduce benchmark across 4 emulated hosts"
out=$("$qcomm" bench allreduce --cluster "$name" --np 4 -b 1M -e 4M -f 4 -n 2 -w 1)
echo "$out"
expect_bench_rows "$out" "mpi " "allgather " "sra "

echo "== a rank killed (SIGKILL) or stalled mid-training across 4 emulated hosts"
"$(dirname "$0")/../mpi/fault_job_test.sh" "$build/tests/qcomm_fault_job" \
  "$qcomm" run --cluster "$name" --np 4 || fail "killed-rank test across the emulated hosts"

"$qcomm" cluster down "$name"
trap - EXIT
extra_leftovers() { pgrep -af "qcomm_mpi_tests|qcomm_allreduce_bench|qcomm_fault_job|orted" || true; }
expect_clean "$name" "teardown"
echo "== 2 emulated hosts x 2 ranks (shared memory inside a host): mpirun tests and hierarchical"
name=qcsl
trap cleanup EXIT
"$qcomm" cluster down "$name" >/dev/null 2>&1 || true
"$qcomm" cluster up 2 --slots 2 --link 1gbit --prefix "$name" --subnet 10.231.79
"$qcomm" run --cluster "$name" --np 4 "$build/tests/qcomm_mpi_tests"
out=$("$qcomm" bench allreduce --cluster "$name" --np 4 -b 1M -e 4M -f 4 -n 2 -w 1 \
      --algorithms mpi,sra,hierarchical,auto)
echo "$out"
expect_bench_rows "$out" hierarchical auto:
# Hierarchical sends about half of what flat sra sends out of each host (host_tx, last column).
echo "$out" | awk '$1 == 4194304 && $10 == "sra" { s = $NF } $1 == 4194304 && $10 == "hierarchical" { h = $NF }
                   END { exit !(h > 0 && h < 0.6 * s) }' ||
  fail "hierarchical did not halve the bytes that cross hosts"
"$qcomm" cluster down "$name"
trap - EXIT
expect_clean "$name" "teardown of the 2x2 cluster"

echo "== qcomm sweep on the repository's example (local and 1 Gbit/s cluster)"
sweep_out=$(mktemp -d)
"$qcomm" sweep "$(dirname "$0")/../../examples/sweep.toml" --out "$sweep_out" | tail -2
for f in results.csv results.json report.md time-1gbit-4ranks.png busbw-local-4ranks.png; do
  [ -s "$sweep_out/$f" ] || fail "the sweep did not write $f"
done
rm -rf "$sweep_out"

echo "== the README's demo, cluster part included; it must clean up after itself"
demo=$("$qcomm" demo --size 100000 --repeats 1)
echo "$demo" | tail -3
echo "$demo" | grep -qE "x faster" || fail "the demo printed no speedup line"
expect_clean qcdemo "the demo"
echo "cluster test passed"
