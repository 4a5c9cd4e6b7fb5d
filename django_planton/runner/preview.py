"""A dry run of one task's schedule: what it would return now, and the SQL it sent.

The schedule runs as a cycle runs it (:func:`.sandbox.attempt_user_code`):
the task's row locked with ``SKIP LOCKED``, the same active and held-back
instructions, the same concurrency and limit in its ``ScheduleContext``.
Then the whole transaction rolls back: the rows it claimed are as they
were and unlocked, no execution is written, no signal is sent, and the
task's attempt state (attempt number, next attempt, last error) is left
alone. For an operator who wants to know why a task dispatches nothing, or
what it is about to dispatch.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils.translation import gettext

from ..conf import planton_settings
from ..registry import registry
from ..sql import InstructionStates, TaskReads
from .sandbox import attempt_user_code
from .timeouts import statement_timeout_sql

__all__ = ["PREVIEW_STATEMENT_TIMEOUT", "ExecutedStatement", "SchedulePreview", "preview_schedule"]

#: Seconds any one statement of a preview may run (PostgreSQL and MariaDB): a
#: schedule that waits on a lock, or scans for minutes, fails in the page
#: with the database's error instead of holding the web request. Time spent
#: in Python is not limited.
PREVIEW_STATEMENT_TIMEOUT = 10.0

# The savepoint a cycle wraps a schedule in: ours, not the schedule's.
_OWN_STATEMENTS = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutedStatement:
    """One statement the schedule sent, with its parameters filled in, and how long it took."""

    sql: str
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulePreview:
    """What a task's schedule would return now, found in a transaction that rolled back."""

    task_name: str
    #: Why nothing could be tried (unregistered task, row missing or held); else empty.
    problem: str = ""
    #: The database's time when the task's row was read.
    now: datetime | None = None
    paused: bool = False
    next_attempt_at: datetime | None = None
    #: What the schedule's ``ScheduleContext`` held.
    attempt_number: int = 0
    concurrency: int = 0
    active: tuple[str, ...] = ()
    held_back: tuple[str, ...] = ()
    #: The limit handed to the schedule; None when it was not called.
    limit: int | None = None
    #: Whether the schedule was called (not when every slot is taken).
    scheduled: bool = False
    #: The instructions that would be dispatched.
    instructions: tuple[str, ...] = ()
    #: Returned but held back by the retry policy: would not be dispatched.
    returned_held_back: tuple[str, ...] = ()
    #: The errors the schedule (or its limit) met, each with its traceback.
    errors: tuple[str, ...] = ()
    statements: tuple[ExecutedStatement, ...] = field(default_factory=tuple)


def preview_schedule(name: str, *, using: str = DEFAULT_DB_ALIAS) -> SchedulePreview:
    """Run the task's schedule as the next cycle would, then roll everything back."""
    task = registry.get_or_none(name)
    if task is None:
        return SchedulePreview(
            task_name=name,
            problem=gettext(
                "Task %(name)r is not registered in this process: there is no schedule to run."
            )
            % {"name": name},
        )
    connection = connections[using]
    statements: list[ExecutedStatement] = []
    with _session_limited(connection), transaction.atomic(using=using):
        try:
            _limit_transaction(connection)
            rows, now = TaskReads(using).lock_tasks([name])
            row = rows.get(name)
            if row is None:
                return SchedulePreview(task_name=name, problem=_no_row(name, using))
            states = TaskReads(using).instruction_states([row.pk]).get(row.pk)
            states = states or InstructionStates([], [], {})
            with _recording(connection, statements):
                attempt = attempt_user_code(
                    task,
                    row,
                    states,
                    may_schedule=lambda: True,
                    connection=connection,
                    max_instruction_length=planton_settings().max_instruction_length,
                )
        finally:
            transaction.set_rollback(True, using=using)
    outcome = attempt.outcome
    return SchedulePreview(
        task_name=name,
        now=now,
        paused=row.is_paused,
        next_attempt_at=row.next_attempt_at,
        attempt_number=row.attempt_number,
        concurrency=attempt.concurrency,
        active=tuple(states.active),
        held_back=tuple(states.held_back),
        limit=outcome.limit if outcome is not None else None,
        scheduled=outcome.scheduled if outcome is not None else bool(attempt.errors),
        instructions=outcome.instructions if outcome is not None else (),
        returned_held_back=outcome.held_back if outcome is not None else (),
        errors=tuple(_described(error) for error in attempt.errors),
        statements=tuple(statements),
    )


def _limit_transaction(connection: BaseDatabaseWrapper) -> None:
    """On PostgreSQL, limit each statement of the preview's transaction (which rolls back)."""
    if connection.vendor == "postgresql":
        _execute(connection, PREVIEW_STATEMENT_TIMEOUT, transaction_only=True)


@contextmanager
def _session_limited(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """On MySQL and MariaDB, limit the session's statements meanwhile, then put its limit back.

    Put back once the preview's transaction has ended: Django sends nothing
    inside a block marked for rollback. The web request's connection serves
    other requests.
    """
    if connection.vendor != "mysql":
        yield
        return
    mariadb = getattr(connection, "mysql_is_mariadb", False)
    with connection.cursor() as cursor:
        # Seconds on MariaDB, milliseconds on MySQL; 0 is no limit on both.
        cursor.execute(
            "SELECT @@SESSION.max_statement_time"
            if mariadb
            else "SELECT @@SESSION.max_execution_time / 1000"
        )
        (before,) = cursor.fetchone()
    _execute(connection, PREVIEW_STATEMENT_TIMEOUT)
    try:
        yield
    finally:
        _execute(connection, float(before))


def _execute(
    connection: BaseDatabaseWrapper, seconds: float, *, transaction_only: bool = False
) -> None:
    sql, params = statement_timeout_sql(connection, seconds, transaction_only=transaction_only)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _no_row(name: str, using: str) -> str:
    from ..models import MaintenanceTask

    if MaintenanceTask.objects.using(using).for_task(name).exists():
        return gettext(
            "A runner is attempting task %(name)r right now (its row is locked); "
            "try again in a moment."
        ) % {"name": name}
    return gettext("Task %(name)r has no row yet: run_planton creates it when it starts.") % {
        "name": name
    }


def _described(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


@contextmanager
def _recording(connection: Any, into: list[ExecutedStatement]) -> Iterator[None]:
    """Record each statement sent through ``connection`` with its parameters filled in."""

    def record(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        started = time.monotonic()
        try:
            return execute(sql, params, many, context)
        finally:
            if not sql.lstrip().upper().startswith(_OWN_STATEMENTS):
                shown = (
                    sql
                    if many
                    else connection.ops.last_executed_query(context["cursor"], sql, params)
                )
                into.append(ExecutedStatement(sql=shown, seconds=time.monotonic() - started))

    with connection.execute_wrapper(record):
        yield
