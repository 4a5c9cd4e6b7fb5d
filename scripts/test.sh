#!/usr/bin/env bash
# The test suite: lint, then pytest on SQLite, then pytest on PostgreSQL.
#
# PostgreSQL: TEST_POSTGRES_URL names a server to use; without it, a throwaway
# server is started with scripts/postgres.sh when the binaries are installed.
# Set PLANTON_SKIP_POSTGRES=1 to run on SQLite alone.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ruff"
ruff check .
ruff format --check .

echo "== pytest on SQLite"
env -u DATABASE_URL python -m pytest "$@"

if [ "${PLANTON_SKIP_POSTGRES:-0}" = "1" ]; then
  echo "== PostgreSQL run skipped (PLANTON_SKIP_POSTGRES=1)"
  exit 0
fi

started_here=0
url="${TEST_POSTGRES_URL:-}"
if [ -z "$url" ]; then
  url=$(bash scripts/postgres.sh start)
  started_here=1
  trap 'bash scripts/postgres.sh stop' EXIT
fi

echo "== pytest on PostgreSQL ($url)"
DATABASE_URL="$url" python -m pytest "$@"
