"""The runner's own reads: a batch's task rows, locked, and their active instructions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db import connections, models

from .arrays import postgres_array

if TYPE_CHECKING:
    from ..models import MaintenanceTask

__all__ = ["TASK_ROW_FIELDS", "TaskReads", "TaskRow"]


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

    def instance(self, using: str) -> MaintenanceTask:
        """The row as a model instance (other fields load on access), for the executions."""
        from ..models import MaintenanceTask

        return MaintenanceTask.from_db(using, list(TASK_ROW_FIELDS), self)


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

    def lock_tasks(self, names: Sequence[str]) -> dict[str, TaskRow]:
        """The tasks' rows, locked, by name; a row another transaction holds is left out."""
        from ..models import MaintenanceTask

        def build(lookup: str, value: Any) -> models.QuerySet[Any, Any]:
            return (
                MaintenanceTask.objects.using(self.using)
                .select_for_update(skip_locked=True)
                .filter(**{f"nid{lookup}": value})
                .order_by()
                .values_list(*TASK_ROW_FIELDS)
            )

        rows = self._run("lock", build, "nid", names)
        return {row[1]: TaskRow(*row) for row in rows}

    def active_instructions(self, task_ids: Sequence[int]) -> dict[int, list[str]]:
        """The instructions still running, by task id."""
        from ..models import MaintenanceTaskExecution

        def build(lookup: str, value: Any) -> models.QuerySet[Any, Any]:
            return (
                MaintenanceTaskExecution.objects.using(self.using)
                .running()
                .filter(**{f"maintenance_task_id{lookup}": value})
                .order_by()
                .values_list("maintenance_task_id", "instruction")
            )

        active: dict[int, list[str]] = {}
        for task_id, instruction in self._run("active", build, "maintenance_task_id", task_ids):
            active.setdefault(task_id, []).append(instruction)
        return active

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
