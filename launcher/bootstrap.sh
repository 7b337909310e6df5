#!/usr/bin/env bash
# The README's two commands: set up a fresh Debian 12 machine, build qcomm into build/, then run.
#   bash launcher/bootstrap.sh demo [qcomm demo options]   # the main job
#   bash launcher/bootstrap.sh test [ctest options]        # the whole test suite
# Installs missing Debian packages when run as root; otherwise prints the apt-get line and stops.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="${QCOMM_BUILD_DIR:-$root/build}"
jobs="${QCOMM_JOBS:-2}"
python=/usr/bin/python3  # Debian's interpreter, the one with numpy and pytest

packages=(
  build-essential cmake ninja-build pkg-config iproute2
  libboost-serialization-dev librandom123-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libopenmpi-dev openmpi-bin libgloo-dev
  python3 python3-dev python3-numpy python3-pytest pybind11-dev python3-pybind11 python3-sklearn
  python3-matplotlib python3-torch
  docker.io debootstrap
)

usage() {
  echo "usage: bash launcher/bootstrap.sh demo|test [arguments]" >&2
  exit 2
}

install_missing() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "qcomm needs these Debian packages; install them as root, then run this again:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}"
  # docker.io would start the system's dockerd, which rewrites iptables and adds a bridge: keep
  # every service from starting while installing (qcomm starts its own engine, without those).
  local policy=/usr/sbin/policy-rc.d ours=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
  fi
  apt-get update -qq
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
    rc=$?
  [ "$ours" -eq 0 ] || rm -f "$policy"
  [ "$rc" -eq 0 ] || exit "$rc"
}

configure_and_build() {
  echo "== building qcomm in $build"
  mkdir -p "$build"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DPython3_EXECUTABLE="$python" >"$build/configure.log" 2>&1 || {
    cat "$build/configure.log" >&2
    exit 1
  }
  grep -E "^-- qcomm" "$build/configure.log" || true
  cmake --build "$build" -j "$jobs"
}

[ $# -ge 1 ] || usage
command=$1
shift
case "$command" in
  demo | test) ;;
  *) usage ;;
esac
install_missing
configure_and_build
case "$command" in
  demo) exec "$build/bin/qcomm" demo "$@" ;;
  test) cd "$build" && exec ctest --output-on-failure -j "$jobs" "$@" ;;
esac
