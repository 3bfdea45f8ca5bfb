#!/bin/sh
# The password reaches Valkey through a 0600 file, never its command line (`ps` shows that).
set -eu
: "${REDIS_PASSWORD:?set REDIS_PASSWORD (the cache's password), e.g. in the compose env file}"
umask 077
printf 'requirepass "%s"\n' "$(printf '%s' "$REDIS_PASSWORD" | sed 's/["\\]/\\&/g')" > /tmp/valkey-auth.conf
# Lab 05's broker.yaml may turn on the append-only file: the driver mounts its rendering here.
if [ -r /etc/scalelab-valkey/broker.conf ]; then
    cat /etc/scalelab-valkey/broker.conf >> /tmp/valkey-auth.conf
fi
exec "$@"
