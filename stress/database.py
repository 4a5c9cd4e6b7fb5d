"""The database as the stress run sees it from outside the runners: one connection, the queries.

The connection reconnects on its own, because PostgreSQL is restarted on
purpose in the middle of the run. Every query the scenarios and the final
checks need is a function here, so that the SQL sits in one file and the
rest of the run reads like what it checks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg

from stress.config import EMAIL_TASK
from stress.records import Account, Attempt, CutShort, EndedExecution, Execution, Stranded


class Database:
    """One autocommit psycopg connection that reconnects (PostgreSQL is restarted on purpose)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: psycopg.Connection[tuple[Any, ...]] | None = None

    def rows(
        self, sql: str, params: Sequence[Any] = (), *, retry_for: float = 30.0
    ) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + retry_for
        while True:
            try:
                if self._connection is None or self._connection.closed:
                    self._connection = psycopg.connect(self.url, autocommit=True, connect_timeout=3)
                cursor = self._connection.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError:
                self.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.rows(sql, params)

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None


def now(db: Database) -> datetime:
    """The database's time."""
    value: datetime = db.value("SELECT statement_timestamp()")
    return value


_STARTS = (
    "FROM maintenance_task_execution e JOIN maintenance_task t "
    "ON t.id = e.maintenance_task_id WHERE t.nid = %s"
)

# -- accounts ------------------------------------------------------------------------------


def owed(db: Database) -> int:
    """Accounts still waiting for their e-mail."""
    return int(
        db.value(
            "SELECT count(*) FROM accounts_useraccount "
            "WHERE deleted_at IS NULL AND email_sent_at IS NULL"
        )
    )


def sent_count(db: Database) -> int:
    return int(
        db.value("SELECT count(*) FROM accounts_useraccount WHERE email_sent_at IS NOT NULL")
    )


def accounts(db: Database) -> list[Account]:
    return [
        (int(pk), str(email), bool(sent))
        for pk, email, sent in db.rows(
            "SELECT id, email, email_sent_at IS NOT NULL FROM accounts_useraccount "
            "WHERE deleted_at IS NULL"
        )
    ]


# -- the task rows, as an operator changes them --------------------------------------------


def task_rows_present(db: Database, names: Sequence[str]) -> int:
    return int(
        db.value("SELECT count(*) FROM maintenance_task WHERE nid = ANY(%s)", (list(names),))
    )


def effective_limit(db: Database) -> int:
    """send_user_email's concurrency: the operator's override, else the declared one."""
    rows = db.rows(
        "SELECT concurrency, maximum_concurrent_execution_count FROM maintenance_task "
        "WHERE nid = %s",
        (EMAIL_TASK,),
    )
    if not rows:
        raise RuntimeError(f"no maintenance_task row for {EMAIL_TASK}")
    declared, override = rows[0]
    return int(override or declared)


def set_paused(db: Database, names: Sequence[str], paused: bool) -> None:
    db.execute(
        "UPDATE maintenance_task SET is_paused = %s, updated_at = now() WHERE nid = ANY(%s)",
        (paused, list(names)),
    )


def set_override(db: Database, value: int) -> None:
    db.execute(
        "UPDATE maintenance_task SET maximum_concurrent_execution_count = %s, "
        "updated_at = now() WHERE nid = %s",
        (value, EMAIL_TASK),
    )


def set_maximum_duration(db: Database, duration: timedelta) -> None:
    db.execute(
        "UPDATE maintenance_task SET maximum_execution_duration = %s, updated_at = now() "
        "WHERE nid = %s",
        (duration, EMAIL_TASK),
    )


def task_row_updates(db: Database) -> int:
    """Row updates of maintenance_task since the server started: about one per committed cycle."""
    return int(
        db.value("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'maintenance_task'")
    )


# -- executions ----------------------------------------------------------------------------


def latest_start(db: Database, task: str) -> datetime | None:
    value: datetime | None = db.value(f"SELECT max(e.started_at) {_STARTS}", (task,))
    return value


def last_start_until(db: Database, task: str, moment: datetime) -> datetime | None:
    value: datetime | None = db.value(
        f"SELECT max(e.started_at) {_STARTS} AND e.started_at <= %s", (task, moment)
    )
    return value


def first_start_after(db: Database, task: str, moment: datetime) -> datetime | None:
    value: datetime | None = db.value(
        f"SELECT min(e.started_at) {_STARTS} AND e.started_at > %s", (task, moment)
    )
    return value


def starts_between(db: Database, task: str, start: datetime, end: datetime) -> list[datetime]:
    """Start times in ``(start, end]``."""
    return [
        row[0]
        for row in db.rows(
            f"SELECT e.started_at {_STARTS} AND e.started_at > %s AND e.started_at <= %s",
            (task, start, end),
        )
    ]


# The process's name (its STRESS_RUNNER) from an execution's hostname, which
# holds the runner's identity, name:pid.
HOST = "split_part(hostname, ':', 1)"


def running_count(db: Database, hostnames: Sequence[str] | None = None) -> int:
    """Executions not ended yet, of every process or of those named."""
    if hostnames is None:
        return int(
            db.value("SELECT count(*) FROM maintenance_task_execution WHERE ended_at IS NULL")
        )
    return int(
        db.value(
            "SELECT count(*) FROM maintenance_task_execution WHERE ended_at IS NULL "
            f"AND {HOST} = ANY(%s)",
            (list(hostnames),),
        )
    )


def hanging_count(db: Database, hostname: str) -> int:
    """Executions of ``hostname`` running for more than a second: it hangs in them."""
    return int(
        db.value(
            f"SELECT count(*) FROM maintenance_task_execution WHERE {HOST} = %s "
            "AND ended_at IS NULL AND started_at < now() - interval '1 second'",
            (hostname,),
        )
    )


def running_of(db: Database, hostname: str) -> list[tuple[int, str]]:
    """Id and instruction of the executions ``hostname`` has not ended."""
    return [
        (int(pk), str(instruction))
        for pk, instruction in db.rows(
            "SELECT id, instruction FROM maintenance_task_execution "
            f"WHERE {HOST} = %s AND ended_at IS NULL ORDER BY id",
            (hostname,),
        )
    ]


def still_running(db: Database, ids: Sequence[int]) -> int:
    return int(
        db.value(
            "SELECT count(*) FROM maintenance_task_execution "
            "WHERE id = ANY(%s) AND ended_at IS NULL",
            (list(ids),),
        )
    )


def running_started_before(db: Database, moment: datetime) -> int:
    return int(
        db.value(
            "SELECT count(*) FROM maintenance_task_execution WHERE ended_at IS NULL "
            "AND started_at < %s",
            (moment,),
        )
    )


def ended_executions(db: Database, ids: Sequence[int]) -> list[EndedExecution]:
    rows = db.rows(
        "SELECT id, started_at, ended_at, terminated_at, terminated_reason "
        "FROM maintenance_task_execution WHERE id = ANY(%s)",
        (list(ids),),
    )
    return [EndedExecution(*row) for row in rows]


def terminated_since(db: Database, moment: datetime) -> list[Stranded]:
    rows = db.rows(
        f"SELECT id, {HOST}, started_at, terminated_at FROM maintenance_task_execution "
        "WHERE terminated_at > %s ORDER BY id",
        (moment,),
    )
    return [Stranded(*row) for row in rows]


def executions(db: Database) -> list[Execution]:
    rows = db.rows(
        "SELECT e.id, t.nid, e.instruction, e.started_at, e.ended_at, "
        "coalesce(split_part(e.hostname, ':', 1), ''), "
        "e.error IS NOT NULL, e.terminated_at, e.terminated_reason "
        "FROM maintenance_task_execution e JOIN maintenance_task t "
        "ON t.id = e.maintenance_task_id"
    )
    return [Execution(*row) for row in rows]


# -- what the stress app's receivers and probes recorded -----------------------------------


def attempts(db: Database, task: str, kind: str = "attempt") -> list[Attempt]:
    return [
        (at, str(runner))
        for at, runner in db.rows(
            "SELECT at, runner FROM stress_probe_event WHERE kind = %s AND task_name = %s "
            "ORDER BY at",
            (kind, task),
        )
    ]


def cut_short(db: Database) -> list[CutShort]:
    """Receivers that found their execution terminated once their work was done."""
    return [
        CutShort(at, str(runner), str(detail))
        for at, runner, detail in db.rows(
            "SELECT at, runner, detail FROM stress_probe_event WHERE kind = 'cut_short' ORDER BY at"
        )
    ]


def late_starts(db: Database) -> list[CutShort]:
    """Receivers that found their execution already ended when they started."""
    return [
        CutShort(at, str(runner), str(detail))
        for at, runner, detail in db.rows(
            "SELECT at, runner, detail FROM stress_probe_event WHERE kind = 'late_start' "
            "ORDER BY at"
        )
    ]


def terminated_signals(db: Database, ids: Sequence[int]) -> int:
    """How many of these executions ``execution_terminated`` was received for."""
    return int(
        db.value(
            "SELECT count(*) FROM stress_probe_event WHERE kind = 'terminated' "
            "AND detail = ANY(%s)",
            ([str(pk) for pk in ids],),
        )
    )


def terminated_events_near(db: Database, moment: datetime) -> list[tuple[Any, ...]]:
    """The terminated events from 30 s before ``moment`` on, to show when some are missing."""
    return db.rows(
        "SELECT id, task_name, runner, at, detail FROM stress_probe_event "
        "WHERE kind = 'terminated' AND at > %s - interval '30 seconds'",
        (moment,),
    )


def schedule_failure_details(db: Database) -> list[str]:
    return [
        str(detail)
        for (detail,) in db.rows(
            "SELECT detail FROM stress_probe_event WHERE kind = 'schedule_failed'"
        )
    ]


def listeners(db: Database) -> int:
    """Connections whose last statement is one of the runners' LISTENs."""
    return int(
        db.value(
            "SELECT count(*) FROM pg_stat_activity WHERE query IN (%s, %s)",
            ("LISTEN django_planton_ended", "LISTEN django_planton_wake"),
        )
    )


# -- the faults ------------------------------------------------------------------------------


def running_ids(db: Database) -> list[int]:
    """Every execution not ended yet."""
    return [
        int(pk)
        for (pk,) in db.rows("SELECT id FROM maintenance_task_execution WHERE ended_at IS NULL")
    ]


def ended_at(db: Database, ids: Sequence[int]) -> list[tuple[int, datetime | None]]:
    """When each of these executions ended (None: still running), by id."""
    return [
        (int(pk), ended)
        for pk, ended in db.rows(
            "SELECT id, ended_at FROM maintenance_task_execution WHERE id = ANY(%s) ORDER BY id",
            (list(ids),),
        )
    ]


def sleeping(db: Database) -> int:
    """Statements of blocking_probe's schedule running now (its ``pg_sleep``)."""
    return int(
        db.value(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
            ("SELECT pg_sleep(greatest(0, %",),
        )
    )


def enable_row_locks(db: Database) -> bool:
    """Install ``pgrowlocks`` (PostgreSQL's contrib: which rows are locked); False if absent."""
    try:
        db.rows("CREATE EXTENSION IF NOT EXISTS pgrowlocks", retry_for=0)
    except psycopg.Error:
        return False
    return True


def held_while_sleeping(db: Database) -> list[str]:
    """The task rows locked by the transaction of blocking_probe's sleeping statement."""
    return [
        str(nid)
        for (nid,) in db.rows(
            "SELECT t.nid FROM pgrowlocks('maintenance_task') l "
            "JOIN maintenance_task t ON t.ctid = l.locked_row "
            "WHERE l.pids && ARRAY(SELECT pid FROM pg_stat_activity WHERE state = 'active' "
            "AND query LIKE %s) ORDER BY t.nid",
            ("SELECT pg_sleep(greatest(0, %",),
        )
    ]
