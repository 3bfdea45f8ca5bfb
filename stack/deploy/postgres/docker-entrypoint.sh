#!/bin/sh
# First start on an empty data volume: initdb with the superuser's password, then the
# shop's own role (not a superuser) owning the `shop` database, with pg_stat_statements —
# what the local runtime sets up (runtimes/local/postgres.py). Then exec the server.
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

# `standby` (lab 04): on an empty data volume, a base backup of the primary as the replication
# role (pg_basebackup -R -X stream: the data directory, standby.signal and primary_conninfo),
# then a hot standby on that copy, replaying the primary's WAL as it streams in. A backup the
# primary refuses leaves nothing behind: the container exits and says why.
# Env: PRIMARY_HOST (default postgres), REPLICATION_USER, REPLICATION_PASSWORD, STANDBY_NAME
# (its application_name on the primary, e.g. standby-1).
if [ "${1:-}" = standby ]; then
    shift
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        : "${REPLICATION_USER:?set REPLICATION_USER (the role the standby replicates as)}"
        : "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD (the replication role's password)}"
        started=$(date +%s.%N)
        if ! PGPASSWORD="$REPLICATION_PASSWORD" PGAPPNAME="${STANDBY_NAME:-standby}" pg_basebackup \
                -h "${PRIMARY_HOST:-postgres}" -p 5432 -U "$REPLICATION_USER" -D "$PGDATA" \
                -R -X stream -c fast --no-sync -w; then
            find "$PGDATA" -mindepth 1 -delete
            echo "docker-entrypoint: pg_basebackup of ${PRIMARY_HOST:-postgres} as $REPLICATION_USER failed" >&2
            exit 1
        fi
        finished=$(date +%s.%N)
        echo "docker-entrypoint: base backup of ${PRIMARY_HOST:-postgres} as $REPLICATION_USER took" \
             "$(echo "$started $finished" | awk '{printf "%.3f", $2 - $1}') s"
    fi
    set -- postgres "$@"
fi

exec "$@"
