# Checks shared by the cluster tests (sourced by cluster_test.sh and tests/docker/docker_test.sh).
fail() { echo "FAIL: $*"; exit 1; }

# What a cluster named $1 left behind, one item a line; a test adds its own kinds of leftovers by
# defining extra_leftovers PREFIX.
cluster_leftovers() {
  ip netns list | grep "^$1-" || true
  ip -o link show | grep -o " $1-[a-z0-9]*" || true
  [ ! -e "/run/qcomm/$1" ] || echo "/run/qcomm/$1"
  if declare -F extra_leftovers >/dev/null; then extra_leftovers "$1"; fi
}

# Veth ends and killed processes go away asynchronously: allow up to 10 s before calling it a leak.
expect_clean() {  # prefix what
  for _ in $(seq 20); do
    [ -z "$(cluster_leftovers "$1")" ] && return 0
    sleep 0.5
  done
  fail "$2 left: $(cluster_leftovers "$1" | tr '\n' ' ')"
}

# The benchmark's output has a row for every algorithm named, and no row with values outside the
# quantization bound (#wrong, column 9).
expect_bench_rows() {  # output algorithm...
  local out=$1 a
  shift
  for a in "$@"; do
    echo "$out" | grep -qE " $a" || fail "benchmark printed no $a row"
  done
  echo "$out" | awk '$1 ~ /^[0-9]+$/ && $9 != 0 { bad = 1 } END { exit bad }' ||
    fail "some benchmark row has values outside the quantization bound"
}
