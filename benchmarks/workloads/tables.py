"""The tables of a run: reset them before, read them for the checks after.

Plain SQL on Django's connection: the same for every workload, the
baselines included, so every run starts from the same state and is judged
by the same rules (:func:`benchmarks.checks.drain_problems`).
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction

from benchmarks.checks import ExecutionRow, drain_problems

# What a plain psycopg connection needs of Django's connection parameters.
CONNINFO_KEYS = {"dbname", "user", "password", "host", "port", "sslmode"}

_EXECUTIONS_SQL = (
    "SELECT e.instruction, e.ended_at IS NULL, e.error IS NOT NULL, e.started_at, e.ended_at "
    "FROM maintenance_task_execution e JOIN maintenance_task t "
    "ON t.id = e.maintenance_task_id WHERE t.nid = %s"
)


def vendor() -> str:
    """``postgresql`` or ``sqlite``: some measures exist on PostgreSQL only."""
    return str(connection.vendor)


def psycopg_conninfo() -> dict[str, Any]:
    """Django's connection parameters, for a psycopg connection of the benchmark's own."""
    params = connection.get_connection_params()
    return {key: value for key, value in params.items() if key in CONNINFO_KEYS}


def reset_tables(accounts: int) -> None:
    """Empty the accounts and both scheduler tables, then create ``accounts`` owed an e-mail.

    Plain SQL, not model instances: building 20,000 objects in Python would
    set this process's peak memory before anything is measured.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "TRUNCATE accounts_useraccount, maintenance_task_execution, maintenance_task "
                "RESTART IDENTITY"
            )
        else:
            for table in ("maintenance_task_execution", "maintenance_task", "accounts_useraccount"):
                cursor.execute(f"DELETE FROM {table}")
            cursor.execute(
                "DELETE FROM sqlite_sequence WHERE name IN "
                "('maintenance_task_execution', 'maintenance_task', 'accounts_useraccount')"
            )
        add_accounts(accounts)
    with connection.cursor() as cursor:
        # Fresh statistics, so every run plans the same way.
        cursor.execute("ANALYZE")


def add_accounts(accounts: int) -> None:
    """Create ``accounts`` more accounts owed an e-mail, in one statement (ids follow on)."""
    if not accounts:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "INSERT INTO accounts_useraccount (email, created_at) "
                "SELECT 'user' || n || '@bench.example', now() FROM generate_series(1, %s) n",
                [accounts],
            )
        else:
            cursor.execute(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %s) "
                "INSERT INTO accounts_useraccount (email, created_at) "
                "SELECT 'user' || n || '@bench.example', CURRENT_TIMESTAMP FROM g",
                [accounts],
            )


def drained_problems(
    task_name: str, accounts: int, concurrency: int, *, ids: tuple[int, int] | None = None
) -> list[str]:
    """Read the accounts and the task's executions, and check them as a perfect drain.

    ``ids``: the first and last id of the accounts that are this task's work
    (several tasks share the table); by default, every account.
    """
    first, last = ids or (0, 2**62)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM accounts_useraccount "
            "WHERE email_sent_at IS NULL AND id BETWEEN %s AND %s",
            [first, last],
        )
        (owed,) = cursor.fetchone()
        cursor.execute(
            "SELECT id FROM accounts_useraccount WHERE id BETWEEN %s AND %s", [first, last]
        )
        account_ids = {str(row[0]) for row in cursor.fetchall()}
        cursor.execute(_EXECUTIONS_SQL, [task_name])
        executions = [ExecutionRow(*row) for row in cursor.fetchall()]
    return drain_problems(
        accounts=accounts,
        account_ids=account_ids,
        owed=owed,
        executions=executions,
        concurrency=concurrency,
    )


def unfinished_work() -> tuple[int, int, int]:
    """Accounts still owed an e-mail, executions still running and executions failed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM accounts_useraccount WHERE email_sent_at IS NULL), "
            "(SELECT count(*) FROM maintenance_task_execution WHERE ended_at IS NULL), "
            "(SELECT count(*) FROM maintenance_task_execution WHERE error IS NOT NULL)"
        )
        owed, running, failed = cursor.fetchone()
    return int(owed), int(running), int(failed)


def executions_by_runner() -> dict[tuple[str, str], int]:
    """Executions by task and by the runner that dispatched them (``hostname``: ``name:pid``)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.nid, e.hostname, count(*) FROM maintenance_task_execution e "
            "JOIN maintenance_task t ON t.id = e.maintenance_task_id GROUP BY t.nid, e.hostname"
        )
        return {(str(task), str(host)): int(count) for task, host, count in cursor.fetchall()}
