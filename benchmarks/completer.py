"""Another process that completes executions: ``python -m benchmarks.completer``.

It stands for a worker system outside the runner's process: it polls the
running executions of one task with psycopg, and ``--hold`` seconds after it
first sees one, marks its account and completes it with plain UPDATEs in one
transaction. The runner hears of it only through PostgreSQL (the trigger and
LISTEN/NOTIFY). Exits 0 once it has completed ``--count`` executions.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime

import psycopg

POLL_SECONDS = 0.005

RUNNING_SQL = (
    "SELECT id, instruction FROM maintenance_task_execution "
    "WHERE maintenance_task_id = %s AND ended_at IS NULL"
)
MARK_SQL = "UPDATE accounts_useraccount SET email_sent_at = %s WHERE id = %s"
COMPLETE_SQL = (
    "UPDATE maintenance_task_execution SET state = 'COMPLETED', ended_at = %s, "
    "last_seen_at = %s WHERE id = %s AND ended_at IS NULL"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-id", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--hold", type=float, default=0.01)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    deadline = time.monotonic() + args.timeout
    seen: dict[int, tuple[str, float]] = {}
    completed = 0
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        print("ready", flush=True)
        while completed < args.count:
            now = time.monotonic()
            if now > deadline:
                print(f"completed {completed} of {args.count} in time", file=sys.stderr)
                return 1
            for execution_id, instruction in conn.execute(RUNNING_SQL, [args.task_id]):
                seen.setdefault(execution_id, (instruction, now))
            for execution_id, (instruction, first_seen) in list(seen.items()):
                if now - first_seen < args.hold:
                    continue
                ended_at = datetime.now(UTC)
                with conn.transaction():
                    conn.execute(MARK_SQL, [ended_at, int(instruction)])
                    conn.execute(COMPLETE_SQL, [ended_at, ended_at, execution_id])
                del seen[execution_id]
                completed += 1
            wait = POLL_SECONDS
            if seen:
                first_due = min(first_seen for _, first_seen in seen.values()) + args.hold
                wait = min(wait, max(0.0, first_due - time.monotonic()))
            time.sleep(wait)
    return 0


if __name__ == "__main__":
    sys.exit(main())
