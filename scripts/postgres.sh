#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL cluster for the tests, the demo and the benchmarks.
#
#   scripts/postgres.sh start   prints the DATABASE_URL of a fresh server (trust auth, loopback only)
#   scripts/postgres.sh stop    stops it and removes its data directory
#
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user.
set -euo pipefail

PGPORT="${PLANTON_PGPORT:-54329}"
PGROOT="${PLANTON_PGROOT:-/tmp/planton-postgres-$PGPORT}"
PGBIN="${PLANTON_PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"

as_owner() {
  if [ "$(id -u)" = "0" ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/pg_ctl" ]; then
    echo "PostgreSQL server binaries not found (install postgresql or set PLANTON_PGBIN)" >&2
    exit 1
  fi
  if [ -f "$PGROOT/data/postmaster.pid" ] && as_owner "$PGBIN/pg_ctl" -D "$PGROOT/data" status >/dev/null 2>&1; then
    echo "postgres://postgres@127.0.0.1:$PGPORT/planton"
    return
  fi
  rm -rf "$PGROOT"
  mkdir -p "$PGROOT/data" "$PGROOT/socket"
  if [ "$(id -u)" = "0" ]; then
    chown -R postgres: "$PGROOT"
  fi
  as_owner "$PGBIN/initdb" -D "$PGROOT/data" -U postgres --auth=trust --encoding=UTF8 --no-sync >"$PGROOT/initdb.log" 2>&1
  as_owner "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -c unix_socket_directories=$PGROOT/socket -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null
  as_owner "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres planton
  echo "postgres://postgres@127.0.0.1:$PGPORT/planton"
}

stop() {
  if [ -d "$PGROOT/data" ]; then
    as_owner "$PGBIN/pg_ctl" -D "$PGROOT/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$PGROOT"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
