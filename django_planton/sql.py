"""Every statement django-planton builds by hand, in one place.

The runner's hot paths (locking a batch of task rows, reading their active
instructions, inserting executions, recording attempts and ending
executions) run thousands of times a second, and compiling a queryset each
time cost several times what the database spends on the statement. So they
are built here once per shape, from the models' metadata, with every value a
parameter prepared by its field as the ORM would. On PostgreSQL a batch's
ids or names go as one array parameter (:func:`postgres_array`), so one
statement serves every batch size. The PostgreSQL triggers and their
channels live here too. Nothing else in the package writes SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db import DatabaseError, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

if TYPE_CHECKING:
    from .models import MaintenanceTask, MaintenanceTaskExecution

__all__ = [
    "ENDED_CHANNEL",
    "WAKE_CHANNEL",
    "TaskReads",
    "TaskRow",
    "insert_executions",
    "postgres_array",
    "update_row",
    "update_rows",
]


def postgres_array(values: Iterable[int | str]) -> str:
    """A PostgreSQL array literal (``{1,2}``, ``{"a","b"}``), to pass as one string parameter.

    Cast in the SQL (``%s::text[]``). psycopg adapts a list element by
    element, which cost more than the rest of an idle batch's statements.
    """
    values = list(values)
    if all(type(value) is int for value in values):
        return "{" + ",".join(map(str, values)) + "}"
    quoted = ('"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values)
    return "{" + ",".join(quoted) + "}"


# -- the runner's reads ------------------------------------------------------------

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
        from .models import MaintenanceTask

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
        from .models import MaintenanceTask

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
        from .models import MaintenanceTaskExecution

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


# -- updates by primary key --------------------------------------------------------


def update_row(
    model: type[models.Model],
    pk: Any,
    values: dict[str, Any],
    *,
    using: str,
    unless_set: str | None = None,
) -> int:
    """``UPDATE`` one row by primary key without building a queryset; returns the row count.

    ``unless_set`` names a field that must still be NULL.
    """
    return update_rows(model, [pk], values, using=using, unless_set=unless_set)


def update_rows(
    model: type[models.Model],
    pks: Sequence[Any],
    values: dict[str, Any],
    *,
    using: str,
    add: dict[str, int] | None = None,
    unless_set: str | None = None,
) -> int:
    """``UPDATE`` rows by primary key without building a queryset; returns the row count.

    Every value is a parameter, prepared by its field as ``QuerySet.update()``
    would. ``add`` adds to integer fields (``F(name) + amount`` without the
    expression machinery).
    """
    if not pks:
        return 0
    connection = connections[using]
    if len(pks) == 1:
        shape = "one"
    elif connection.vendor == "postgresql":
        shape = "array"  # one array: the same statement for any number of rows
    else:
        shape = str(len(pks))
    add = add or {}
    key = (model, tuple(values), tuple(add), unless_set, shape, connection.vendor)
    cached = _UPDATE_STATEMENTS.get(key)
    if cached is None:
        cached = _UPDATE_STATEMENTS[key] = _update_statement(
            connection, model, values, add, unless_set, shape
        )
    sql, fields = cached
    params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
    params += [int(amount) for amount in add.values()]
    if shape == "array":
        params.append(postgres_array(pks))
    else:
        params += pks
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


#: The SQL of each kind of ``update_rows()`` call, built once: it runs for
#: every completed execution.
_UPDATE_STATEMENTS: dict[tuple[Any, ...], tuple[str, list[Any]]] = {}


def _update_statement(
    connection: BaseDatabaseWrapper,
    model: type[models.Model],
    values: dict[str, Any],
    add: dict[str, int],
    unless_set: str | None,
    shape: str,
) -> tuple[str, list[Any]]:
    quote = connection.ops.quote_name
    meta = model._meta
    fields: list[Any] = [meta.get_field(name) for name in values]
    assignments = [f"{quote(field.column)} = %s" for field in fields]
    for name in add:
        column = quote(_column(model, name))
        assignments.append(f"{column} = {column} + %s")
    assert meta.pk is not None
    pk_column = quote(meta.pk.column)
    if shape == "one":
        where = f"{pk_column} = %s"
    elif shape == "array":
        where = f"{pk_column} = ANY(%s::bigint[])"
    else:
        where = f"{pk_column} IN ({', '.join(['%s'] * int(shape))})"
    sql = f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} WHERE {where}"
    if unless_set is not None:
        sql += f" AND {quote(_column(model, unless_set))} IS NULL"
    return sql, fields


def _column(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    column = getattr(field, "column", None)
    if not isinstance(column, str):
        raise TypeError(f"{model.__name__}.{name} has no column")
    return column


# -- inserting executions ------------------------------------------------------------

_INSERTED = ("maintenance_task", "instruction", "started_at", "hostname", "state", "created_at")


def insert_executions(executions: Sequence[MaintenanceTaskExecution], *, using: str) -> None:
    """INSERT new executions in one statement and set their primary keys.

    ``bulk_create`` prepares every field of every row through the ORM, which
    cost more than all the rest of a busy cycle; here the values shared by
    the batch (times, host, state) are prepared once, and the other columns
    keep their NULL. On PostgreSQL the rows go as two arrays, so the
    statement is the same for any batch size. Without ``RETURNING`` (MySQL),
    ``bulk_create`` does it.
    """
    if not executions:
        return
    connection = connections[using]
    model = type(executions[0])
    if not connection.features.can_return_rows_from_bulk_insert:
        model.objects.using(using).bulk_create(executions)
        return
    fields: list[Any] = [model._meta.get_field(name) for name in _INSERTED]
    shared = [
        field.get_db_prep_save(getattr(executions[0], field.attname), connection)
        for field in fields[2:]
    ]
    quote = connection.ops.quote_name
    assert model._meta.pk is not None
    head = (
        f"INSERT INTO {quote(model._meta.db_table)} "
        f"({', '.join(quote(field.column) for field in fields)})"
    )
    returning = f"RETURNING {quote(model._meta.pk.column)}"
    rows: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            task_ids = postgres_array([execution.maintenance_task_id for execution in executions])
            instructions = postgres_array([execution.instruction for execution in executions])
            cursor.execute(
                f"{head} SELECT unnest(%s::bigint[]), unnest(%s::text[]), %s, %s, %s, %s "
                f"{returning}",
                [task_ids, instructions, *shared],
            )
            rows = cursor.fetchall()
        else:
            size = len(executions)
            if connection.features.max_query_params:
                size = max(1, connection.features.max_query_params // len(fields))
            for start in range(0, len(executions), size):
                chunk = executions[start : start + size]
                values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
                params = [
                    value
                    for execution in chunk
                    for value in (execution.maintenance_task_id, execution.instruction, *shared)
                ]
                cursor.execute(f"{head} VALUES {values} {returning}", params)
                rows += cursor.fetchall()
    if len(rows) != len(executions):
        raise DatabaseError(f"Inserted {len(rows)} executions for {len(executions)}.")
    for execution, (primary_key,) in zip(executions, rows, strict=True):
        execution.pk = primary_key
        execution._state.adding = False
        execution._state.db = using


# -- PostgreSQL triggers and channels --------------------------------------------------

#: Carries the ids of tasks whose executions ended, from the trigger below.
ENDED_CHANNEL = "django_planton_ended"
#: Carries the names of tasks to attempt now (``notify.wake_on_change``).
WAKE_CHANNEL = "django_planton_wake"

CREATE_TRIGGER_SQL = [
    f"""
    CREATE OR REPLACE FUNCTION planton_notify_executions_ended() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        task_ids text;
    BEGIN
        SELECT string_agg(DISTINCT new_rows.maintenance_task_id::text, ',')
          INTO task_ids
          FROM new_rows
          JOIN old_rows ON old_rows.id = new_rows.id
         WHERE old_rows.ended_at IS NULL AND new_rows.ended_at IS NOT NULL;
        IF task_ids IS NOT NULL THEN
            PERFORM pg_notify('{ENDED_CHANNEL}', task_ids);
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER maintenance_task_execution_ended
    AFTER UPDATE ON maintenance_task_execution
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION planton_notify_executions_ended()
    """,
]

DROP_TRIGGER_SQL = [
    "DROP TRIGGER IF EXISTS maintenance_task_execution_ended ON maintenance_task_execution",
    "DROP FUNCTION IF EXISTS planton_notify_executions_ended()",
]

WAKE_FUNCTION_SQL = f"""
    CREATE OR REPLACE FUNCTION planton_wake_task() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{WAKE_CHANNEL}', TG_ARGV[0]);
        RETURN NULL;
    END
    $$
"""


def create_wake_trigger_sql(trigger: str, table: str, kinds: str, task_name: str) -> str:
    """The trigger of ``wake_on_change``; ``table`` comes quoted, the task name as a literal."""
    literal = "'" + task_name.replace("'", "''") + "'"
    return (
        f"CREATE TRIGGER {trigger} AFTER {kinds} ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION planton_wake_task({literal})"
    )


def drop_wake_trigger_sql(trigger: str, table: str) -> str:
    return f"DROP TRIGGER IF EXISTS {trigger} ON {table}"
