"""Writes by primary key, and the INSERT of a batch's executions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.functions import Now
from django.utils import timezone

from .arrays import postgres_array
from .clock import DatabaseNowPlus, now_sql, to_datetime, uses_process_clock

if TYPE_CHECKING:
    from ..models import MaintenanceTaskExecution

__all__ = ["insert_executions", "update_row", "update_rows"]


def update_row(
    model: type[models.Model],
    pk: Any,
    values: dict[str, Any],
    *,
    using: str,
    unless_set: str | None = None,
    comment: str = "",
) -> int:
    """``UPDATE`` one row by primary key without building a queryset; returns the row count.

    ``unless_set`` names a field that must still be NULL.
    """
    return update_rows(model, [pk], values, using=using, unless_set=unless_set, comment=comment)


def update_rows(
    model: type[models.Model],
    pks: Sequence[Any],
    values: dict[str, Any],
    *,
    using: str,
    add: dict[str, int] | None = None,
    unless_set: str | None = None,
    comment: str = "",
) -> int:
    """``UPDATE`` rows by primary key without building a queryset; returns the row count.

    Every value is a parameter, prepared by its field as ``QuerySet.update()``
    would, except the database's ``Now()``, which goes into the SQL. ``add``
    adds to integer fields (``F(name) + amount`` without the expression
    machinery). ``comment`` (an SQL comment) goes before the statement.
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
    # A value that is the database's "now" goes into the SQL, not the parameters.
    # So does a time after it, with its seconds as a parameter.
    from_clock = tuple(name for name, value in values.items() if isinstance(value, Now))
    shifted = tuple(name for name, value in values.items() if isinstance(value, DatabaseNowPlus))
    if (from_clock or shifted) and uses_process_clock(connection):
        now = timezone.now()  # one time for the row, as one statement's would be
        values = {name: _on_process_clock(value, now) for name, value in values.items()}
        from_clock = shifted = ()
    key = (
        model,
        tuple(values),
        from_clock,
        shifted,
        tuple(add),
        unless_set,
        shape,
        connection.vendor,
        comment,
    )
    cached = _UPDATE_STATEMENTS.get(key)
    if cached is None:
        sql, fields = _update_statement(
            connection, model, values, from_clock, add, unless_set, shape, shifted
        )
        cached = _UPDATE_STATEMENTS[key] = (f"{comment} {sql}" if comment else sql, fields)
    sql, fields = cached
    params = [_parameter(field, values[field.name], connection) for field in fields]
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
    from_clock: tuple[str, ...],
    add: dict[str, int],
    unless_set: str | None,
    shape: str,
    shifted: tuple[str, ...] = (),
) -> tuple[str, list[Any]]:
    """The statement, and the fields whose values are its parameters, in order."""
    quote = connection.ops.quote_name
    meta = model._meta
    fields: list[Any] = [meta.get_field(name) for name in values if name not in from_clock]
    assignments = [
        f"{quote(field.column)} = "
        + (values[field.name].sql(connection) if field.name in shifted else "%s")
        for field in fields
    ]
    assignments += [f"{quote(_column(model, name))} = {now_sql(connection)}" for name in from_clock]
    for name in add:
        column = quote(_column(model, name))
        assignments.append(f"{column} = {column} + %s")
    pk_column = quote(_pk_column(model))
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


def _parameter(field: Any, value: Any, connection: BaseDatabaseWrapper) -> Any:
    if isinstance(value, DatabaseNowPlus):
        return value.parameter(connection)
    return field.get_db_prep_save(value, connection)


def _on_process_clock(value: Any, now: datetime) -> Any:
    if isinstance(value, Now):
        return now
    if isinstance(value, DatabaseNowPlus):
        return value.on_process_clock(now)
    return value


def _pk_column(model: type[models.Model]) -> str:
    assert model._meta.pk is not None
    return _column(model, model._meta.pk.name)


def _column(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    column = getattr(field, "column", None)
    if not isinstance(column, str):
        raise TypeError(f"{model.__name__}.{name} has no column")
    return column


# -- inserting executions ------------------------------------------------------------

_INSERTED = (
    "maintenance_task",
    "instruction",
    "attempt",
    "started_at",
    "hostname",
    "state",
    "created_at",
)
#: The columns of ``_INSERTED`` whose value differs from row to row.
_PER_ROW = 3
#: The columns the database stamps with its own time (but SQLite's, the process's).
_STAMPED = frozenset({"started_at", "created_at"})


def insert_executions(executions: Sequence[MaintenanceTaskExecution], *, using: str) -> None:
    """INSERT new executions in one statement and set their primary keys.

    ``bulk_create`` prepares every field of every row through the ORM, which
    cost more than all the rest of a busy cycle; here the values shared by
    the batch (host, state) are prepared once, and the other columns keep
    their NULL. On PostgreSQL the rows go as arrays, so the statement is the
    same for any batch size. Without ``RETURNING`` (MySQL), ``bulk_create``
    does it, with the times the executions carry.

    The start is the database's time at the INSERT itself, read back with the
    primary key: an execution then never starts before one that ended ahead
    of the cycle's read of the active instructions, nor ends before it
    started, whatever the trip to the server took.
    """
    if not executions:
        return
    connection = connections[using]
    model = type(executions[0])
    if not connection.features.can_return_rows_from_bulk_insert:
        model.objects.using(using).bulk_create(executions)
        return
    fields: list[Any] = [model._meta.get_field(name) for name in _INSERTED]
    quote = connection.ops.quote_name
    # SQLite's time is the process's (see uses_process_clock): a parameter.
    stamped_by_database = frozenset() if uses_process_clock(connection) else _STAMPED
    if not stamped_by_database:
        now = timezone.now()
        for execution in executions:
            execution.started_at = execution.created_at = now
    shared = [
        field.get_db_prep_save(getattr(executions[0], field.attname), connection)
        for field in fields[_PER_ROW:]
        if field.name not in stamped_by_database
    ]
    shared_sql = ", ".join(
        now_sql(connection) if field.name in stamped_by_database else "%s"
        for field in fields[_PER_ROW:]
    )
    head = (
        f"INSERT INTO {quote(model._meta.db_table)} "
        f"({', '.join(quote(field.column) for field in fields)})"
    )
    returning = f"RETURNING {quote(_pk_column(model))}, {quote(_column(model, 'started_at'))}"
    rows: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            task_ids = postgres_array([execution.maintenance_task_id for execution in executions])
            instructions = postgres_array([execution.instruction for execution in executions])
            attempts = postgres_array([execution.attempt for execution in executions])
            cursor.execute(
                f"{head} SELECT unnest(%s::bigint[]), unnest(%s::text[]), unnest(%s::int[]), "
                f"{shared_sql} {returning}",
                [task_ids, instructions, attempts, *shared],
            )
            rows = cursor.fetchall()
        else:
            size = len(executions)
            if connection.features.max_query_params:
                size = max(1, connection.features.max_query_params // len(fields))
            for start in range(0, len(executions), size):
                chunk = executions[start : start + size]
                row = f"({', '.join(['%s'] * _PER_ROW)}, {shared_sql})"
                values = ", ".join([row] * len(chunk))
                params = [
                    value
                    for execution in chunk
                    for value in (
                        execution.maintenance_task_id,
                        execution.instruction,
                        execution.attempt,
                        *shared,
                    )
                ]
                cursor.execute(f"{head} VALUES {values} {returning}", params)
                rows += cursor.fetchall()
    if len(rows) != len(executions):
        raise DatabaseError(f"Inserted {len(rows)} executions for {len(executions)}.")
    for execution, (primary_key, started_at) in zip(executions, rows, strict=True):
        execution.pk = primary_key
        execution.started_at = execution.created_at = to_datetime(started_at)
        execution._state.adding = False
        execution._state.db = using
