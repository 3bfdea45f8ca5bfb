#!/bin/sh
# Make lab 02's Express replica runnable on `local` (`make test` and `make lab-2` run this):
# Node.js 18 or newer, and the app's npm packages installed from its lockfile (npm ci in
# stack/shop-node), or say in one line how to get them. compose and kind run it from its own
# image (stack/deploy/shop-node/Dockerfile), which needs neither on the host.
#
#   exit 0  node (>= 18) is there and stack/shop-node/node_modules is installed
#   exit 1  not, and this script cannot fix it: the fix is printed (lab 02's step 10 says the
#           same line; the rest of the lab runs without it)
#
# As root with apt (Debian, CI here): installs Debian's `nodejs` and `npm` when node is missing.
set -u

say() { echo "ensure-node: $*"; }
app="$(cd "$(dirname "$0")/../shop-node" && pwd)"
node_bin() { if [ -n "${NODE_BIN:-}" ]; then echo "$NODE_BIN"; else command -v node || command -v nodejs; fi; }
node_ok() {
    bin="$(node_bin)" || return 1
    major="$("$bin" -p 'process.versions.node.split(".")[0]' 2>/dev/null)" || return 1
    [ "${major:-0}" -ge 18 ]
}

if ! node_ok && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing nodejs and npm (apt-get) ..."
    timeout 600 apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
        nodejs npm >/dev/null 2>&1 || say "apt-get install nodejs npm failed"
fi
if ! node_ok; then
    echo "no Node.js >= 18 for lab 02's Express replica — install it (apt-get install nodejs npm; brew install node) or set NODE_BIN (the rest of lab 02 runs without it)"
    exit 1
fi
if [ -f "$app/node_modules/express/package.json" ] && [ "$app/node_modules/.package-lock.json" -nt "$app/package-lock.json" ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "no npm to install the Express replica's packages — install it (apt-get install npm; it comes with Node.js elsewhere)"
    exit 1
fi
say "npm ci in stack/shop-node (express, pg: from its lockfile) ..."
(cd "$app" && timeout 600 npm ci --omit=dev --no-audit --no-fund >/dev/null) || { echo "npm ci in $app failed: run it there to see why"; exit 1; }
exit 0
