#!/bin/sh
# What the official postgres image's entrypoint does for facedb's compose file, in short: as the
# postgres user, an empty $PGDATA gets a cluster whose superuser is $POSTGRES_USER with
# $POSTGRES_PASSWORD, a database $POSTGRES_DB, and password logins from any address; then the
# command (postgres) replaces this shell.
set -eu
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?the official image refuses to start without POSTGRES_PASSWORD}"
    user="${POSTGRES_USER:-postgres}"
    password_file="$(mktemp)"
    trap 'rm -f "$password_file"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
    initdb --username="$user" --pwfile="$password_file" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 -D "$PGDATA"
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    database="${POSTGRES_DB:-$user}"
    if [ "$database" != postgres ]; then
        # a psql variable, quoted by psql: the name is never spliced into the SQL
        echo 'CREATE DATABASE :"database";' \
            | psql -v ON_ERROR_STOP=1 -v database="$database" --username="$user" --dbname=postgres
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec "$@"
