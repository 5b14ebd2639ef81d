#!/usr/bin/env bash
# Entrypoint with the official postgres image's contract, for Debian's PostgreSQL.
set -euo pipefail

file_env() {
  local var="$1" file_var="${1}_FILE" default="${2:-}"
  if [ -n "${!file_var:-}" ]; then
    export "$var"="$(< "${!file_var}")"
  elif [ -z "${!var:-}" ]; then
    export "$var"="$default"
  fi
  unset "$file_var"
}

if [ "${1:-}" = "postgres" ] && [ "$(id -u)" = "0" ]; then
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "$POSTGRES_PASSWORD" ]; then
      echo "error: POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) is required" >&2
      exit 1
    fi
    pwfile=$(mktemp) && printf '%s' "$POSTGRES_PASSWORD" > "$pwfile" && chown postgres "$pwfile"
    setpriv --reuid=postgres --regid=postgres --init-groups \
      initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
             --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    if [ "$POSTGRES_DB" != "postgres" ]; then
      setpriv --reuid=postgres --regid=postgres --init-groups \
        postgres --single -D "$PGDATA" -c listen_addresses='' postgres \
        <<< "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" >/dev/null
    fi
    echo "entrypoint: initialised $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
  fi
  unset POSTGRES_PASSWORD
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
fi
exec "$@"
