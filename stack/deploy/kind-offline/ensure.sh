#!/bin/bash
# make test-kind's first step: a kind >= 0.30 and a node image to create the cluster from.
# With both already here (kind's official node image pulled, as a learner with a registry has
# it) nothing is built; otherwise `make kind-offline` builds what is missing (each step is
# skipped when still up to date). Says in one line which it did.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
kind_minor=$(kind version 2>/dev/null | sed -nE 's/^kind v0\.([0-9]+)\..*/\1/p' || true)
if [ "${kind_minor:-0}" -ge 30 ] && docker image inspect "$KIND_OFFICIAL_NODE_IMAGE" >/dev/null 2>&1; then
    say "kind $(kind version | cut -d' ' -f2) and kind's official node image are here: nothing to build"
    exit 0
fi
if step_done node-image "$(cat "$CACHE/stamps/node-image" 2>/dev/null)" && [ -s "$CACHE/stamps/node-image" ]; then
    say "kind's official node image is not here: checking the offline build (up to date: seconds) ..."
else
    say "kind's official node image is not here and nothing is built yet: make kind-offline (cold: about 35 minutes) ..."
fi
exec "$HERE/build.sh"
