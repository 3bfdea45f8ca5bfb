#!/bin/sh
# First start on an empty data volume: initdb with the superuser's password, then the
# shop's own role (not a superuser) owning the `shop` database, with pg_stat_statements —
# what the local runtime sets up (runtimes/local_postgres.py). Then exec the server.
#
# Env: POSTGRES_PASSWORD (superuser `postgres`), SHOP_DB_PASSWORD (role `shop`). Both are
# required; they come from the environment (compose: the git-ignored env file), never the image.
set -eu

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (the superuser's password), e.g. in the compose env file}"
    : "${SHOP_DB_PASSWORD:?set SHOP_DB_PASSWORD (the shop role's password), e.g. in the compose env file}"
    umask 077
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth-local=scram-sha-256 --auth-host=scram-sha-256 \
        -E UTF8 --locale=C --no-sync > /dev/null
    rm -f "$pwfile"
    # Clients come from the Compose network (the host reaches the published 127.0.0.1 port).
    printf '%s\n' "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"

    # Single-user mode reads SQL from stdin, one statement a line: the password never appears
    # in a process list.
    literal=$(printf '%s' "$SHOP_DB_PASSWORD" | sed "s/'/''/g")
    postgres --single -D "$PGDATA" postgres > /dev/null <<SQL
CREATE ROLE shop LOGIN PASSWORD '$literal';
CREATE DATABASE shop OWNER shop;
GRANT pg_read_all_stats TO shop;
SQL
    echo "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;" | postgres --single -D "$PGDATA" shop > /dev/null
    echo "docker-entrypoint: initialised $PGDATA (roles postgres, shop; database shop)"
fi

exec "$@"
