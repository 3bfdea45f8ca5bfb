#!/bin/bash
# make kind-offline: everything a kind cluster needs, built here with nothing pulled from a
# container registry — Docker (ensure-docker.sh), the binaries from Go modules (Prometheus for
# lab 07 among them), the images,
# the node image. Each step is skipped when what it made is still up to date, so a second run
# with nothing changed only checks (target: well under 2 minutes).
#
# Needs: root (debootstrap, apt for Docker), Go >= 1.24 and the Go module proxy, Debian's mirror.
# Prints one line per step and a summary; every artefact stays under $CACHE (lib.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
started=$(date +%s)
require_go_proxy
status=0; "$HERE/../ensure-docker.sh" || status=$?
[ "$status" = 0 ] || die "a Docker engine is needed to build and run kind's nodes (ensure-docker.sh said why above)"
"$HERE/build-binaries.sh"
"$HERE/build-prometheus.sh"      # lab 07: Prometheus with Kubernetes service discovery
"$HERE/build-images.sh"
"$HERE/build-node-image.sh"
say "ready in $(elapsed "$started") s: kind $("$BIN/kind" version | cut -d' ' -f2), node image scalelab/kind-node:$KUBERNETES_VERSION," \
    "cache $(du -sm "$CACHE" | cut -f1) MiB in $CACHE"
