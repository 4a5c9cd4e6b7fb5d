"""Workload 2: the tightest loop by hand, for django-planton's drains to be compared with.

One psycopg connection, autocommit, psycopg's defaults. Per cycle: read the
active instructions; claim up to ``limit`` accounts and insert their
executions in one statement; then, per execution:

- ``mark="claim"`` (default): the claiming statement also marked the
  accounts, so one UPDATE completes the execution;
- ``mark="receiver"``: what the per-instruction receiver does, in one
  transaction per execution: mark its account, complete it.

Same tables (and so the same trigger and indexes) as django-planton.
psycopg's automatic server-side prepared statements are off: after five
executions PostgreSQL may switch to a generic plan, and the generic plan
of the completing UPDATE kept scanning the partial index of running
executions, dead entries included, so the loop slowed down as the table
filled (1,340 instead of 3,650 instructions/s over 20,000 accounts).
Django does not prepare either (client-side binding).
"""

from __future__ import annotations

import psycopg
from django.db import connection

from benchmarks.protocol import Result
from django_planton import Task
from django_planton.runner import sync_tasks

from .common import Params, drain_result
from .meters import Meter, peak_rss_mb
from .tables import drained_problems, psycopg_conninfo, reset_tables

ACTIVE_SQL = (
    "SELECT instruction FROM maintenance_task_execution "
    "WHERE maintenance_task_id = %s AND ended_at IS NULL"
)
# send_user_email's filter: owed an e-mail, not deleted, not an active instruction
# (less its exclusion of accounts whose e-mail failed lately: none fails here).
_OWED = """
        SELECT id FROM accounts_useraccount
         WHERE email_sent_at IS NULL AND deleted_at IS NULL AND id <> ALL(%(active)s)
         ORDER BY id LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED"""
_INSERT_EXECUTIONS = """
INSERT INTO maintenance_task_execution
       (maintenance_task_id, instruction, attempt, started_at, hostname, state, created_at)
SELECT %(task_id)s, claimed.id::text, 1, now(), 'benchmark', 'RUNNING', now() FROM claimed
RETURNING id, instruction
"""
# Claim and mark the accounts, and insert their executions, in one statement.
CLAIM_AND_MARK_SQL = (
    "WITH claimed AS (\n    UPDATE accounts_useraccount SET email_sent_at = now()\n"
    f"     WHERE id IN ({_OWED})\n    RETURNING id\n)" + _INSERT_EXECUTIONS
)
# Claim the accounts without marking them (an account claimed is excluded from
# the next claim while its execution is active), and insert their executions.
CLAIM_SQL = f"WITH claimed AS ({_OWED}\n)" + _INSERT_EXECUTIONS
MARK_SQL = "UPDATE accounts_useraccount SET email_sent_at = now() WHERE id = %s"
COMPLETE_SQL = (
    "UPDATE maintenance_task_execution SET state = 'COMPLETED', ended_at = now(), "
    "last_seen_at = now() WHERE id = %s AND ended_at IS NULL"
)


def cycle(
    conn: psycopg.Connection[tuple[object, ...]], task_id: int, concurrency: int, *, mark: str
) -> tuple[int, bool]:
    """One cycle of the loop: its statements, and whether there is anything left to do.

    Statements are counted as Django's are on PostgreSQL: ``BEGIN`` and
    ``COMMIT`` not included.
    """
    active = [str(row[0]) for row in conn.execute(ACTIVE_SQL, [task_id])]
    statements = 1
    limit = concurrency - len(active)
    claimed: list[tuple[object, ...]] = []
    if limit > 0:
        claimed = conn.execute(
            CLAIM_AND_MARK_SQL if mark == "claim" else CLAIM_SQL,
            {"active": [int(a) for a in active], "limit": limit, "task_id": task_id},
        ).fetchall()
        statements += 1
    for execution_id, instruction in claimed:
        if mark == "claim":
            conn.execute(COMPLETE_SQL, [execution_id])
            statements += 1
        else:
            with conn.transaction():
                conn.execute(MARK_SQL, [int(str(instruction))])
                conn.execute(COMPLETE_SQL, [execution_id])
            statements += 2
    return statements, bool(claimed or active)


def run(params: Params) -> Result:
    """Drain with the loop on a connection of its own; then check the tables as for a drain."""
    accounts, concurrency = params["accounts"], params["concurrency"]
    mark = params.get("mark", "claim")
    if mark not in ("claim", "receiver"):
        raise ValueError(f"mark must be 'claim' or 'receiver', not {mark!r}")
    reset_tables(accounts)
    task = Task(name="bench_baseline", schedule=lambda context: [], concurrency=concurrency)
    (task_id,) = sync_tasks([task]).keys()
    conninfo = psycopg_conninfo()
    connection.close()

    statements = 0
    meter = Meter()
    with psycopg.connect(**conninfo, autocommit=True, prepare_threshold=None) as conn:
        meter.start()
        more = True
        while more:
            counted, more = cycle(conn, task_id, concurrency, mark=mark)
            statements += counted
        meter.stop()
    peak = peak_rss_mb()  # before the check reads every execution
    problems = drained_problems(task.name, accounts, concurrency)
    return drain_result(accounts, meter, {"ALL": statements}, peak_rss_mb=peak, problems=problems)
