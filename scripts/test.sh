#!/usr/bin/env bash
# The test suite: lint and type check, then pytest on SQLite, then on PostgreSQL.
#
# PostgreSQL: TEST_POSTGRES_URL names a server to use; without it, a throwaway
# server is started with scripts/postgres.sh (PostgreSQL's server binaries must
# be installed). Set PLANTON_SKIP_POSTGRES=1 to run on SQLite alone.
# MariaDB: set TEST_MYSQL_URL (CI does, with scripts/mariadb.sh) to run there too.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ruff"
ruff check .
ruff format --check .

echo "== mypy (strict, with django-stubs; config in pyproject.toml)"
mypy

echo "== pytest on SQLite"
env -u DATABASE_URL python -m pytest "$@"

if [ "${PLANTON_SKIP_POSTGRES:-0}" = "1" ]; then
  echo "== PostgreSQL run skipped (PLANTON_SKIP_POSTGRES=1)"
  exit 0
fi

url="${TEST_POSTGRES_URL:-}"
if [ -z "$url" ]; then
  url=$(bash scripts/postgres.sh start)
  trap 'bash scripts/postgres.sh stop' EXIT
fi

echo "== pytest on PostgreSQL ($url)"
DATABASE_URL="$url" python -m pytest "$@"

if [ -n "${TEST_MYSQL_URL:-}" ]; then
  python -c "import MySQLdb" 2>/dev/null || python -m pip install --quiet "mysqlclient>=2.2"
  echo "== pytest on MariaDB ($TEST_MYSQL_URL)"
  DATABASE_URL="$TEST_MYSQL_URL" python -m pytest "$@"
fi
