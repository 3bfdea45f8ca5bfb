#!/bin/sh
# Build the one base image stack/deploy needs, with no container registry: Debian bookworm
# from Debian's own package mirror (debootstrap) with python3, venv and pip, imported into
# Docker and tagged with the exact name the Dockerfiles default to (python:3.11-slim-bookworm),
# so `docker build` and `docker compose` never pull. Run as root (debootstrap needs it):
#
#   make images-offline                     # or: sudo stack/deploy/offline/build-python-base.sh
#
# Re-running is cheap: an image already tagged from this same recipe (label
# org.scalelab.recipe = hash of this file) is kept; a changed recipe builds it again.
# Env: DEBIAN_MIRROR (default: the host's own mirror from /etc/apt, else deb.debian.org),
#      BASE_TAG (default python:3.11-slim-bookworm), DOCKER (default docker).
set -eu

SUITE=bookworm
BASE_TAG=${BASE_TAG:-python:3.11-slim-bookworm}
DOCKER=${DOCKER:-docker}
PACKAGES=python3,python3-venv,python3-pip,ca-certificates,tzdata
HERE=$(cd "$(dirname "$0")" && pwd)
RECIPE=$(sha256sum "$HERE/build-python-base.sh" | cut -c1-16)

say() { echo "images-offline: $*"; }

host_mirror() {
    # The first Debian mirror apt already uses here (one-line or deb822 sources).
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$file" ] || continue
        sed -nE 's#^deb +(\[[^]]*\] +)?(https?://[^ ]+/debian/?) +.*#\2#p; s#^URIs: +(https?://[^ ]+/debian/?)$#\1#p' "$file"
    done | head -n 1
}

if [ "$($DOCKER image inspect --format '{{ index .Config.Labels "org.scalelab.recipe" }}' "$BASE_TAG" 2>/dev/null)" = "$RECIPE" ]; then
    say "$BASE_TAG is up to date (recipe $RECIPE)"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "images-offline: debootstrap needs root — run it with sudo" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "images-offline: debootstrap not found — apt-get install debootstrap" >&2; exit 1; }

MIRROR=${DEBIAN_MIRROR:-$(host_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOTFS=$(mktemp -d "${TMPDIR:-/var/tmp}/scalelab-rootfs.XXXXXX")
trap 'rm -rf "$ROOTFS"' EXIT INT TERM

say "debootstrap $SUITE from $MIRROR (about a minute) ..."
started=$(date +%s)
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" > "$ROOTFS.log" 2>&1 || {
    tail -n 20 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; echo "images-offline: debootstrap failed (log above)" >&2; exit 1; }
rm -f "$ROOTFS.log"

# Make it behave like the upstream python:3.11-slim image: `python` on PATH, pip allowed
# outside a venv (no EXTERNALLY-MANAGED marker), no apt caches, docs or man pages.
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
printf '#!/bin/sh\nexec python3 -m pip "$@"\n' > "$ROOTFS/usr/local/bin/pip"
chmod 755 "$ROOTFS/usr/local/bin/pip"
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/*
: > "$ROOTFS/etc/resolv.conf"   # Docker provides it at run time; never the build host's

tar -C "$ROOTFS" --numeric-owner -c . | $DOCKER import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin' \
    --change "LABEL org.scalelab.recipe=$RECIPE org.scalelab.source=debootstrap-$SUITE" \
    --change 'CMD ["python3"]' \
    - "$BASE_TAG" > /dev/null
say "$BASE_TAG built from Debian $SUITE in $(( $(date +%s) - started )) s ($($DOCKER image inspect --format '{{.Size}}' "$BASE_TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
