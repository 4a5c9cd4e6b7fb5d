#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL cluster: scripts/postgres.py does the work
# (the one helper that tests, stress and benchmarks share); this keeps the
# shell-friendly name.
#
#   scripts/postgres.sh start   prints the DATABASE_URL of a fresh server (trust auth, loopback only)
#   scripts/postgres.sh stop    stops it and removes its data directory
set -euo pipefail
exec python3 "$(dirname "$0")/postgres.py" "$@"
