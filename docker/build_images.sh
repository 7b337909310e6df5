#!/usr/bin/env bash
# Builds qcomm's images from docker/Dockerfile on the engine DOCKER_HOST names (or the system's):
#
#   docker/build_images.sh           # qcomm:node (cluster hosts) and qcomm:latest (qcomm inside)
#   docker/build_images.sh --node    # qcomm:node only (what `qcomm cluster up --docker` and its
#                                    # test need: qcomm's build is mounted into the containers)
#
# Makes the Debian 12 base image first where it is missing (make_base_image.sh, needs root);
# Docker's layer cache makes a second run take seconds. Without an engine:
#   export DOCKER_HOST=$(qcomm cluster engine)     # starts qcomm's own
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
node_only=0
if [[ ${1:-} == --node ]]; then node_only=1; shift; fi
die() { echo "build_images: $*" >&2; exit 1; }
command -v docker >/dev/null || die "docker not found (apt-get install docker.io)"
docker info >/dev/null 2>&1 ||
  die "no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}; export DOCKER_HOST=\$(qcomm cluster engine)"
base=${QCOMM_DOCKER_BASE:-qcomm-base:bookworm}
if [[ $base == qcomm-base:* ]]; then "$here/make_base_image.sh" "$base"; fi
build() {  # TAG [TARGET]
  local started=$SECONDS
  local log
  log=$(docker build --network host --build-arg BASE="$base" -f "$here/Dockerfile" \
        ${2:+--target "$2"} -t "$1" "$repo" 2>&1) || { echo "$log" | tail -30; die "$1 failed"; }
  echo "build_images: $1 ($((SECONDS - started)) s)"
}
build qcomm:node node
[[ $node_only -eq 1 ]] || build qcomm:latest
