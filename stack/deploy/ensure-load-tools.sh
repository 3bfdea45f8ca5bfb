#!/bin/sh
# Make the real load tools of lab 01's "the tutorial's load tools" step available (`make test`
# and `make lab-1` run this), or say in one line per missing tool how to get it:
#
#   ab      ApacheBench (closed loop: -c clients), Debian's `apache2-utils`
#   vegeta  Vegeta v12.13.0 (open model: a fixed request rate), MIT, built from its Go module
#           into the tools cache, ${SCALELAB_TOOLS_CACHE:-$HOME/.cache/scalelab/tools}/bin
#           (scalelab.loadtools looks there first, then on PATH)
#
#   exit 0  both are there
#   exit 1  one is missing and this script cannot install it: the fix is printed (the lab's
#           stack still starts; the notebook's step says the same line)
#
# As root with apt (Debian, CI here): installs `apache2-utils` without its recommends. Vegeta
# needs Go (>= 1.22) and the Go module proxy; nothing else is downloaded.
set -u

VEGETA_MODULE=github.com/tsenart/vegeta/v12@v12.13.0
CACHE_BIN="${SCALELAB_TOOLS_CACHE:-$HOME/.cache/scalelab/tools}/bin"

say() { echo "ensure-load-tools: $*"; }
have_ab() { command -v ab >/dev/null 2>&1; }
have_vegeta() { [ -x "$CACHE_BIN/vegeta" ] || command -v vegeta >/dev/null 2>&1; }

if ! have_ab && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing apache2-utils for ab (apt-get) ..."
    timeout 600 apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
        apache2-utils >/dev/null 2>&1 || say "apt-get install apache2-utils failed"
fi
if ! have_vegeta && command -v go >/dev/null 2>&1; then
    say "building vegeta ($VEGETA_MODULE) into $CACHE_BIN (go install, about a minute) ..."
    mkdir -p "$CACHE_BIN"
    GOBIN="$CACHE_BIN" timeout 1200 go install "$VEGETA_MODULE" >/dev/null 2>&1 \
        || say "go install $VEGETA_MODULE failed (is the Go module proxy reachable?)"
fi

status=0
if ! have_ab; then
    echo "no ab (ApacheBench) — run \`apt-get install apache2-utils\` (Debian/Ubuntu, as root); macOS ships it (lab 01's load-tools step needs it)"
    status=1
fi
if ! have_vegeta; then
    echo "no vegeta — install Go, then \`GOBIN=$CACHE_BIN go install $VEGETA_MODULE\`, or \`brew install vegeta\` (lab 01's load-tools step needs it)"
    status=1
fi
exit $status
