#!/usr/bin/env bash
# Builds a minimal Debian image from Debian's packages, for a machine that reaches Debian's mirror
# but no image registry: debootstrap (minbase) into a folder, then `podman import`. The Containerfiles
# next to this script start FROM it (python, postgres, redis).
#
#   docker/podman/base.sh [--rebuild]      (root; needs debootstrap and podman)
#
# The root filesystem is cached as a tarball under OCTOTRACE_PODMAN_CACHE (default
# /var/tmp/octotrace-podman), with debootstrap's downloaded packages, so a second machine build or a
# removed image costs an import (seconds), not a debootstrap (minutes). --rebuild starts over.
# The mirror is OCTOTRACE_DEBIAN_MIRROR, else the one the host's apt uses, else debootstrap's default.
set -euo pipefail

SUITE=bookworm
IMAGE=${OCTOTRACE_DEBIAN_IMAGE:-localhost/octotrace-debian:$SUITE}
CACHE=${OCTOTRACE_PODMAN_CACHE:-/var/tmp/octotrace-podman}
TARBALL=$CACHE/debian-$SUITE-minbase.tar

rebuild=false
[ "${1:-}" = --rebuild ] && rebuild=true

if ! $rebuild && podman image exists "$IMAGE"; then
  echo "base image $IMAGE is present"
  exit 0
fi

# The host's apt sources, one-line (sources.list) and deb822 (*.sources) formats: the first URI whose
# path ends in /debian (the archive) and in /debian-security.
host_uris() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '/^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i }
           /^[[:space:]]*deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }'
}
mirror=${OCTOTRACE_DEBIAN_MIRROR:-$(host_uris | grep -E '/debian/?$' | head -n 1 || true)}
security=${OCTOTRACE_DEBIAN_SECURITY_MIRROR:-$(host_uris | grep -E '/debian-security/?$' | head -n 1 || true)}

rootfs=""
unmount_under() {
  # debootstrap mounts /proc and /sys inside the target; an interrupted run can leave them there.
  awk -v root="$1" 'index($2, root "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r target; do
    umount -l "$target" || true
  done
}
cleanup() {
  if [ -n "$rootfs" ] && [ -d "$rootfs" ]; then
    unmount_under "$rootfs"
    rm -rf --one-file-system "$rootfs"
  fi
}
trap cleanup EXIT

if $rebuild || [ ! -s "$TARBALL" ]; then
  mkdir -p "$CACHE/debs"
  rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  echo "debootstrap $SUITE (minbase) from ${mirror:-the default mirror}; log: $CACHE/debootstrap.log"
  if ! debootstrap --variant=minbase --include=ca-certificates --cache-dir="$CACHE/debs" \
      "$SUITE" "$rootfs" ${mirror:+"$mirror"} >"$CACHE/debootstrap.log" 2>&1; then
    tail -n 30 "$CACHE/debootstrap.log" >&2
    echo "debootstrap failed (full log: $CACHE/debootstrap.log)" >&2
    exit 1
  fi
  unmount_under "$rootfs"
  # debootstrap wrote `deb <mirror> $SUITE main`; add the point-release updates and security.
  used=$(awk '$1 == "deb" { print $2; exit }' "$rootfs/etc/apt/sources.list")
  {
    echo "deb $used $SUITE main"
    echo "deb $used $SUITE-updates main"
    if [ -n "$security" ]; then echo "deb $security $SUITE-security main"; fi
  } >"$rootfs/etc/apt/sources.list"
  # Images install with `apt-get install` after their own `apt-get update`: no package lists or
  # downloaded packages in the base.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
  tar -C "$rootfs" --numeric-owner -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
fi

echo "importing $TARBALL as $IMAGE"
podman import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$TARBALL" "$IMAGE" >/dev/null
echo "base image $IMAGE is built"
