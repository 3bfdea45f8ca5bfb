#!/bin/bash
# A Debian root filesystem from Debian's own mirror (debootstrap, minbase), for the offline
# images: build-rootfs.sh NAME SUITE PACKAGES -> $CACHE/rootfs/NAME, and NAME.id (the hash of
# what it was made from; kept while that does not change). Needs root (debootstrap).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
NAME=$1 SUITE=$2 PACKAGES=$3
ROOTFS=$CACHE/rootfs/$NAME
ID=$(recipe_hash "$0" <(echo "$SUITE $PACKAGES"))
if step_done "rootfs-$NAME" "$ID" && [ -d "$ROOTFS" ]; then
    exit 0
fi
[ "$(id -u)" = 0 ] || die "debootstrap needs root — run make kind-offline as root (or with sudo)"
command -v debootstrap >/dev/null || die "debootstrap not found — apt-get install debootstrap"

host_mirror() {
    sed -nE 's#^deb +(\[[^]]*\] +)?(https?://[^ ]+/debian/?) +.*#\2#p; s#^URIs: +(https?://[^ ]+/debian/?)$#\1#p' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 || true
}
MIRROR=${DEBIAN_MIRROR:-$(host_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

started=$(date +%s)
rm -rf "$ROOTFS" "$ROOTFS.log"
mkdir -p "$(dirname "$ROOTFS")"
say "debootstrap $SUITE ($PACKAGES) from $MIRROR ..."
# The keyring of the host's debian-archive-keyring knows trixie's keys too (bookworm's package is
# updated for each release).
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" > "$ROOTFS.log" 2>&1 || {
    tail -n 20 "$ROOTFS.log" >&2; die "debootstrap $SUITE failed (log: $ROOTFS.log)"; }
rm -f "$ROOTFS.log"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/*
: > "$ROOTFS/etc/resolv.conf"     # given by the container runtime, never the build host's
echo "$ID" > "$CACHE/rootfs/$NAME.id"
mark_done "rootfs-$NAME" "$ID"
say "rootfs $NAME ($SUITE) in $(elapsed "$started") s, $(du -sm "$ROOTFS" | cut -f1) MiB"
