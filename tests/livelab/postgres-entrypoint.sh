#!/bin/sh
# Entrypoint of the lab's postgres:15-alpine stand-in (Debian's PostgreSQL 15).
#
# Behaves like the official image where dester-harden can tell: POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB and POSTGRES_HOST_AUTH_METHOD are read on the
# first start only; without a password it refuses to initialise; it drops root
# before running the server; the socket and loopback are trusted (so
# `docker exec -i C psql` needs no password) and every other host must log in
# with scram-sha-256; the server listens on every address of the container.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA

# `command: -c ssl=on` means arguments for postgres, as in the official image.
case "${1:-}" in
  '') set -- postgres ;;
  -*) set -- postgres "$@" ;;
esac

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  chmod 2777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo "Error: Database is uninitialized and superuser password is not specified." >&2
    echo "       You must specify POSTGRES_PASSWORD to a non-empty value for the superuser." >&2
    exit 1
  fi
  # The password reaches initdb through a private file, never an argument.
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=trust \
    --encoding=UTF8 --locale=C ${POSTGRES_INITDB_ARGS:-} >/dev/null
  rm -f "$pwfile"
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\npassword_encryption = scram-sha-256\n" >>"$PGDATA/postgresql.conf"
  # Initialise on a private socket and no TCP: nothing may log in before the password is set, and
  # `pg_isready` (the healthcheck, on the default socket) must not call this temporary server ready.
  initsock=$(mktemp -d)
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=$initsock" -w -s start
  export PGHOST="$initsock"
  if [ "$db" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -q -U "$user" -d postgres --set db="$db" <<'SQL'
CREATE DATABASE :"db";
SQL
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "running $f"; . "$f" ;;
      *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 -q -U "$user" -d "$db" -f "$f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w -s stop
  unset PGHOST
  rmdir "$initsock"
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
