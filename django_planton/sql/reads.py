"""The runner's own reads: a batch's task rows, locked, and their instructions' states."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from django.conf import settings
from django.db import connections, models
from django.utils import timezone

from .arrays import postgres_array
from .clock import DatabaseNow, now_sql, to_datetime, uses_process_clock
from .writes import _column

if TYPE_CHECKING:
    from ..models import MaintenanceTask

__all__ = ["TASK_ROW_FIELDS", "InstructionStates", "TaskReads", "TaskRow"]


#: What a cycle reads of a task's row, and what a receiver may read through
#: ``execution.maintenance_task`` without another query. The timestamps are
#: left out: converting them was most of what locking a batch of rows cost.
TASK_ROW_FIELDS = (
    "id",
    "nid",
    "maximum_execution_duration",
    "maximum_concurrent_execution_count",
    "concurrency",
    "is_paused",
    "attempt_number",
    "next_attempt_at",
    "last_error",
    "saturated_active_count",
)


class TaskRow(NamedTuple):
    """A locked ``maintenance_task`` row, as a cycle needs it (in ``TASK_ROW_FIELDS`` order)."""

    pk: int
    nid: str
    maximum_execution_duration: timedelta
    maximum_concurrent_execution_count: int
    concurrency: int
    is_paused: bool
    attempt_number: int
    next_attempt_at: datetime | None
    last_error: str
    saturated_active_count: int | None

    def instance(self, using: str) -> MaintenanceTask:
        """The row as a model instance (other fields load on access), for the executions."""
        from ..models import MaintenanceTask

        return MaintenanceTask.from_db(using, list(TASK_ROW_FIELDS), self)


class InstructionStates(NamedTuple):
    """A task's instructions that a cycle must know about."""

    #: Dispatched and not ended.
    active: list[str]
    #: Failed, and held back by the retry policy (or given up).
    held_back: list[str]
    #: Failed and free to be retried: failures in a row, by instruction.
    failures: dict[str, int]


# What a row of the instruction read is: the active ones, then the failing ones.
_ACTIVE, _HELD_BACK, _RETRYABLE = 0, 1, 2

_Compiled = tuple[str, Any, Any]


class TaskReads:
    """The runner's own reads, compiled once (per batch size) and run with new parameters.

    The SQL is the ORM's own; on PostgreSQL its ``column = %s`` becomes
    ``column = ANY(%s::text[])``, so one statement serves every batch size
    and psycopg parses it once.
    """

    def __init__(self, using: str) -> None:
        self.using = using
        self._as_array = connections[using].vendor == "postgresql"
        self._compiled: dict[tuple[str, int], _Compiled] = {}
        self._states_sql: dict[tuple[str, int], str] = {}
        self._process_clock = uses_process_clock(connections[using])

    def lock_tasks(self, names: Sequence[str]) -> tuple[dict[str, TaskRow], datetime | None]:
        """The tasks' rows, locked, by name, and the database's time (None without rows).

        A row another transaction holds is left out. The time comes with the
        rows, so the cycle's clock costs no round trip of its own.
        """
        from ..models import MaintenanceTask

        with_time = not self._process_clock

        def build(lookup: str, value: Any) -> models.QuerySet[Any, Any]:
            rows = (
                MaintenanceTask.objects.using(self.using)
                .select_for_update(skip_locked=True)
                .filter(**{f"nid{lookup}": value})
                .order_by()
            )
            if with_time:
                rows = rows.annotate(database_now=DatabaseNow())
                return rows.values_list(*TASK_ROW_FIELDS, "database_now")
            return rows.values_list(*TASK_ROW_FIELDS)

        rows = self._run("lock", build, "nid", names)
        if not rows:
            return {}, None
        if not with_time:
            return {row[1]: TaskRow(*row) for row in rows}, timezone.now()
        return {row[1]: TaskRow(*row[:-1]) for row in rows}, to_datetime(rows[0][-1])

    def instruction_states(self, task_ids: Sequence[int]) -> dict[int, InstructionStates]:
        """The active and the failing instructions of each task, in one statement, by task id."""
        key = ("states", 0 if self._as_array else len(task_ids))
        sql = self._states_sql.get(key)
        if sql is None:
            sql = self._states_sql[key] = self._instruction_states_sql(len(task_ids))
        ids = [postgres_array(task_ids)] if self._as_array else list(task_ids)
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql, ids * 2)
            rows = cursor.fetchall()
        states: dict[int, InstructionStates] = {}
        for task_id, instruction, kind, failures in rows:
            state = states.get(task_id)
            if state is None:
                state = states[task_id] = InstructionStates([], [], {})
            if kind == _ACTIVE:
                state.active.append(instruction)
            elif kind == _HELD_BACK:
                state.held_back.append(instruction)
            else:
                state.failures[instruction] = int(failures)
        return states

    def _instruction_states_sql(self, size: int) -> str:
        from ..models import FailingInstruction, MaintenanceTaskExecution

        connection = connections[self.using]
        quote = connection.ops.quote_name

        def column(model: type[models.Model], name: str) -> str:
            return f"{quote(model._meta.db_table)}.{quote(_column(model, name))}"

        among = "= ANY(%s::bigint[])" if self._as_array else f"IN ({', '.join(['%s'] * size)})"
        executions, failing = MaintenanceTaskExecution, FailingInstruction
        now = now_sql(connection)
        return (
            f"SELECT {column(executions, 'maintenance_task')}, "
            f"{column(executions, 'instruction')}, {_ACTIVE}, 0 "
            f"FROM {quote(executions._meta.db_table)} "
            f"WHERE {column(executions, 'ended_at')} IS NULL "
            f"AND {column(executions, 'maintenance_task')} {among} "
            "UNION ALL "
            f"SELECT {column(failing, 'maintenance_task')}, {column(failing, 'instruction')}, "
            f"CASE WHEN {column(failing, 'given_up_at')} IS NOT NULL "
            f"OR {column(failing, 'retry_at')} > {now} "
            f"THEN {_HELD_BACK} ELSE {_RETRYABLE} END, {column(failing, 'failures')} "
            f"FROM {quote(failing._meta.db_table)} "
            f"WHERE {column(failing, 'maintenance_task')} {among}"
        )

    def _run(
        self,
        kind: str,
        build: Callable[[str, Any], models.QuerySet[Any, Any]],
        column: str,
        values: Sequence[Any],
    ) -> list[Any]:
        key = (kind, 0 if self._as_array else len(values))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(build, column, values)
        sql, compiler, converters = compiled
        params = [postgres_array(values)] if self._as_array else list(values)
        with connections[self.using].cursor() as cursor:
            if self._as_array:
                _load_times_in_c(cursor.cursor)
            cursor.execute(sql, params)
            rows: list[Any] = list(cursor.fetchall())
        if converters:
            rows = list(compiler.apply_converters(rows, converters))
        return rows

    def _compile(
        self,
        build: Callable[[str, Any], models.QuerySet[Any, Any]],
        column: str,
        values: Sequence[Any],
    ) -> _Compiled:
        """Compile ``build(lookup, value)``; ``column`` is what the lookup filters on."""
        if self._as_array:
            # Compiled as "column = %s" for one value, then made "column = ANY(%s)".
            queryset, expected = build("", values[0]), [values[0]]
        else:
            queryset, expected = build("__in", values), list(values)
        compiler = queryset.query.get_compiler(using=self.using)
        sql, params = compiler.as_sql()
        if list(params) != list(expected):  # the SQL must take exactly our parameters
            raise RuntimeError(f"Unexpected parameters {params!r} in {sql!r}")
        if self._as_array:
            quote = compiler.connection.ops.quote_name
            meta = queryset.model._meta
            comparison = f"{quote(meta.db_table)}.{quote(meta.get_field(column).column)} = %s"
            if sql.count(comparison) != 1:
                raise RuntimeError(f"Expected one {comparison!r} in {sql!r}")
            array_type = "bigint[]" if isinstance(values[0], int) else "text[]"
            sql = sql.replace(comparison, comparison.replace("= %s", f"= ANY(%s::{array_type})"))
        selected = [expression for expression, _, _ in compiler.select]
        return sql, compiler, compiler.get_converters(selected)


def _load_times_in_c(cursor: Any) -> None:
    """Have this psycopg 3 cursor parse ``timestamptz`` values with psycopg's own loader.

    Django's loader is Python code that attaches the connection's time zone
    to each value; locking a batch of 200 rows parses 400 of them, which was
    a fifth of the CPU of an idle task's attempt. psycopg's loader (compiled,
    with ``psycopg[binary]``) gives the same aware times: Django sets the
    session's time zone to UTC when ``USE_TZ`` is on. Left as it is
    otherwise, and with psycopg2.
    """
    adapters = getattr(cursor, "adapters", None)
    if adapters is None or not settings.USE_TZ:
        return
    from psycopg.types.datetime import TimestamptzLoader

    adapters.register_loader("timestamptz", TimestamptzLoader)
