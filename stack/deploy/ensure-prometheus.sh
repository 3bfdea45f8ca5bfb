#!/bin/sh
# Make a Prometheus server binary available for lab 07 (`make test` and `make lab-7` run
# this), or say in one line how to get one.
#
#   exit 0  a prometheus binary is there (PROMETHEUS_BIN, PATH or /usr/bin/prometheus)
#   exit 1  none, and this script cannot install one: the fix is printed
#
# As root with apt (Debian, CI here): installs Debian's `prometheus` package (2.42, with
# promtool), without its recommends; the lab runs its own server process from the state
# directory, not the package's system service.
set -u

say() { echo "ensure-prometheus: $*"; }
found() {
    if [ -n "${PROMETHEUS_BIN:-}" ]; then [ -x "$PROMETHEUS_BIN" ]; return; fi
    command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ]
}

found && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing prometheus (apt-get) ..."
    timeout 600 apt-get update -qq >/dev/null 2>&1 || true
    # No init system runs here in CI; where one does, the package may start its own service (unused).
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 timeout 900 apt-get install -y -qq --no-install-recommends \
        prometheus >/dev/null 2>&1 || say "apt-get install prometheus failed"
    found && exit 0
fi
echo "prometheus not found — run \`apt-get install prometheus\` (Debian/Ubuntu, as root) or \`brew install prometheus\`, or set PROMETHEUS_BIN=/path/to/prometheus"
exit 1
