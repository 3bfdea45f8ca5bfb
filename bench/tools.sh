#!/bin/sh
# Load tools for `make bench` from Debian's packages, when they are missing and we may install:
# wrk (HTTP load) and redis-benchmark (redis-tools). Without them bench says which rungs it skips.
missing=""
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v redis-benchmark >/dev/null 2>&1 || missing="$missing redis-tools"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "bench: installing$missing from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null 2>&1 || \
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null; } || \
    echo "bench: could not install$missing — those rungs are skipped (install them: apt-get install$missing)"
else
  echo "bench: missing$missing — those rungs are skipped (install: sudo apt-get install$missing, or brew install wrk redis)"
fi
exit 0
