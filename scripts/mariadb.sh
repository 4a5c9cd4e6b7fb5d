#!/usr/bin/env bash
# Start or stop a throwaway MariaDB server for the tests.
#
#   scripts/mariadb.sh start   prints the DATABASE_URL of a fresh server (user planton, loopback only)
#   scripts/mariadb.sh stop    stops it and removes its data directory
#
# Needs Debian's mariadb-server; as root the server runs as the `mysql` system user.
set -euo pipefail

PORT="${PLANTON_MYSQL_PORT:-33069}"
ROOT="${PLANTON_MYSQL_ROOT:-/tmp/planton-mariadb-$PORT}"
SOCKET="$ROOT/mysqld.sock"

start() {
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    echo "mariadbd not found (apt-get install mariadb-server)" >&2
    exit 1
  fi
  if [ -S "$SOCKET" ] && mariadb-admin --socket="$SOCKET" -u root ping >/dev/null 2>&1; then
    echo "mysql://planton:planton@127.0.0.1:$PORT/planton"
    return
  fi
  rm -rf "$ROOT"
  mkdir -p "$ROOT/data"
  local user_opt=()
  if [ "$(id -u)" = "0" ]; then
    chown -R mysql: "$ROOT"
    user_opt=(--user=mysql)
  fi
  mariadb-install-db --no-defaults "${user_opt[@]}" --datadir="$ROOT/data" --auth-root-authentication-method=normal \
    --skip-test-db >"$ROOT/install.log" 2>&1
  /usr/sbin/mariadbd --no-defaults "${user_opt[@]}" --datadir="$ROOT/data" --socket="$SOCKET" \
    --port="$PORT" --bind-address=127.0.0.1 --pid-file="$ROOT/mariadbd.pid" \
    --log-error="$ROOT/server.log" --innodb-flush-log-at-trx-commit=0 --skip-log-bin \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci --max-connections=200 \
    >/dev/null 2>&1 &
  local ready=0
  for _ in $(seq 1 120); do
    if mariadb-admin --socket="$SOCKET" -u root ping >/dev/null 2>&1; then
      ready=1
      break
    fi
    sleep 0.5
  done
  if [ "$ready" != 1 ]; then
    echo "MariaDB did not start; see $ROOT/server.log:" >&2
    tail -n 20 "$ROOT/server.log" >&2
    exit 1
  fi
  mariadb --socket="$SOCKET" -u root <<'SQL'
CREATE DATABASE IF NOT EXISTS planton CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'planton'@'%' IDENTIFIED BY 'planton';
CREATE USER IF NOT EXISTS 'planton'@'localhost' IDENTIFIED BY 'planton';
GRANT ALL PRIVILEGES ON *.* TO 'planton'@'%';
GRANT ALL PRIVILEGES ON *.* TO 'planton'@'localhost';
FLUSH PRIVILEGES;
SQL
  echo "mysql://planton:planton@127.0.0.1:$PORT/planton"
}

stop() {
  if [ -S "$SOCKET" ]; then
    mariadb-admin --socket="$SOCKET" -u root shutdown >/dev/null 2>&1 || true
  fi
  rm -rf "$ROOT"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
