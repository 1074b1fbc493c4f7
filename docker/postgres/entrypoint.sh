#!/bin/sh
# Initialises $PGDATA on first start (password authentication over TCP, trust on the local
# socket), creates $POSTGRES_DB, runs /docker-entrypoint-initdb.d/*.sh against it (as the official
# image does), then runs the server as the postgres user. The password comes from
# $POSTGRES_PASSWORD or the file $POSTGRES_PASSWORD_FILE names.
set -eu
user=${POSTGRES_USER:-postgres}
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    cat "$POSTGRES_PASSWORD_FILE" > "$pwfile"
  else
    printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE}" > "$pwfile"
  fi
  chown postgres "$pwfile"
  runuser -u postgres -- initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != "$user" ]; then
    runuser -u postgres -- postgres --single -D "$PGDATA" -j postgres >/dev/null <<SQL
CREATE DATABASE "$POSTGRES_DB";
SQL
  fi
  if ls /docker-entrypoint-initdb.d/*.sh >/dev/null 2>&1; then
    # A server on the local socket only, for the init scripts.
    runuser -u postgres -- pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    for script in /docker-entrypoint-initdb.d/*.sh; do
      POSTGRES_USER=$user POSTGRES_DB=${POSTGRES_DB:-$user} PGHOST=/run/postgresql sh "$script"
    done
    runuser -u postgres -- pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
fi
exec runuser -u postgres -- "$@" -D "$PGDATA"
