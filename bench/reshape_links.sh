#!/bin/sh
# Reshapes every link of an emulated cluster (`qcomm cluster up ... --prefix NAME`) to RATE, both
# directions, with the burst `qcomm cluster up` gives that rate (4 ms of it, at least 64 KB): a
# link that slows down or speeds up during a run (bench/auto_drift_bench.cc). Run as root in the
# machine's own network namespace (the bridge's side of each link lives there, out of the hosts'
# sight): a program on the cluster can ask for it through a file, as docs/performance.md shows.
#   sh bench/reshape_links.sh NAME RATE      e.g. sh bench/reshape_links.sh qa 50mbit
set -eu
[ $# -eq 2 ] || { echo "usage: $0 NAME RATE (e.g. qa 50mbit)" >&2; exit 2; }
name=$1 rate=$2
bits=$(echo "$rate" | awk '{
  n = $0 + 0; u = tolower(substr($0, length($0 + 0) + 1));
  if (u == "kbit") n *= 1e3; else if (u == "mbit") n *= 1e6; else if (u == "gbit") n *= 1e9;
  else if (u != "bit") { print "bad"; exit } printf "%.0f", n }')
[ "$bits" != bad ] || { echo "$0: bad rate '$rate' (NUMBER kbit|mbit|gbit)" >&2; exit 2; }
burst=$(awk -v b="$bits" 'BEGIN { x = b / 8 * 0.004; if (x < 65536) x = 65536; printf "%d", x }')
hosts=$(ip netns list | awk -v p="$name-h" 'index($1, p) == 1 { print substr($1, length(p) + 1) }')
[ -n "$hosts" ] || { echo "$0: no cluster '$name' (no namespace $name-h*)" >&2; exit 1; }
for h in $hosts; do
  ip netns exec "$name-h$h" tc qdisc change dev eth0 root tbf rate "$rate" burst "${burst}b" latency 100ms
  tc qdisc change dev "$name-v$h" root tbf rate "$rate" burst "${burst}b" latency 100ms
done
