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
            cursor.execute(
                "INSERT INTO accounts_useraccount (email, created_at) "
                "SELECT 'user' || n || '@bench.example', now() FROM generate_series(1, %s) n",
                [accounts],
            )
        else:
            for table in ("maintenance_task_execution", "maintenance_task", "accounts_useraccount"):
                cursor.execute(f"DELETE FROM {table}")
            cursor.execute(
                "DELETE FROM sqlite_sequence WHERE name IN "
                "('maintenance_task_execution', 'maintenance_task', 'accounts_useraccount')"
            )
            cursor.execute(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %s) "
                "INSERT INTO accounts_useraccount (email, created_at) "
                "SELECT 'user' || n || '@bench.example', CURRENT_TIMESTAMP FROM g",
                [accounts],
            )
    with connection.cursor() as cursor:
        # Fresh statistics, so every run plans the same way.
        cursor.execute("ANALYZE")


def drained_problems(task_name: str, accounts: int, concurrency: int) -> list[str]:
    """Read the accounts and the task's executions, and check them as a perfect drain."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM accounts_useraccount WHERE email_sent_at IS NULL")
        (owed,) = cursor.fetchone()
        cursor.execute("SELECT id FROM accounts_useraccount")
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
