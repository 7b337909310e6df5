#!/usr/bin/env bash
# Makes the Debian 12 base image the Dockerfile starts FROM when no image registry can be reached:
#
#   docker/make_base_image.sh [--force] [IMAGE]     # default IMAGE: qcomm-base:bookworm
#
# debootstrap (variant minbase, suite bookworm) into a temporary directory, from the Debian mirror
# apt is configured with (or $QCOMM_DEBIAN_MIRROR), then `docker import` of that tree. An image of
# that name that exists already is kept (it is the cache across runs) unless --force. Needs root
# (debootstrap), debootstrap and a Docker engine (DOCKER_HOST is honoured). With a registry,
# `docker build --build-arg BASE=debian:12 ...` needs none of this.
set -euo pipefail
force=0
if [[ ${1:-} == --force ]]; then force=1; shift; fi
image=${1:-qcomm-base:bookworm}
die() { echo "make_base_image: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap); run it with sudo"
command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
command -v docker >/dev/null || die "docker not found (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers${DOCKER_HOST:+ at $DOCKER_HOST}"
if [[ $force -eq 0 ]] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "make_base_image: $image exists (--force to make it again)"
  exit 0
fi
# The mirror apt uses: deb822 sources first, then the one-line format.
mirror=${QCOMM_DEBIAN_MIRROR:-}
if [[ -z $mirror ]]; then
  mirror=$(grep -hs -m1 -E '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources |
           awk '{print $2}' || true)
fi
if [[ -z $mirror ]]; then
  mirror=$(grep -hs -m1 -E '^deb .*/debian/? ' /etc/apt/sources.list | awk '{print $2}' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d /tmp/qcomm-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "make_base_image: debootstrap bookworm from $mirror (about a minute)"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
  { tail -20 "$root.log"; rm -f "$root.log"; die "debootstrap failed"; }
rm -f "$root.log"
# Keep the image small and apt usable inside builds.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" --numeric-owner -c . |
  docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$image" >/dev/null
echo "make_base_image: $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
