"""The two tables of django-planton, after the reference schema.

``maintenance_task`` holds one row per registered task: what an operator may
steer (pause, a concurrency override, the maximum execution duration) and the
attempt state that the runners share, so that several ``run_planton``
processes keep one cadence. ``maintenance_task_execution`` holds one row per
dispatched instruction; the rows without ``ended_at`` are the task's active
instructions.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import signals
from .registry import registry

logger = logging.getLogger("django_planton")


class MaintenanceTaskQuerySet(models.QuerySet["MaintenanceTask"]):
    def for_task(self, name: str) -> MaintenanceTaskQuerySet:
        return self.filter(nid=name)

    def paused(self) -> MaintenanceTaskQuerySet:
        return self.filter(is_paused=True)

    def active(self) -> MaintenanceTaskQuerySet:
        return self.filter(is_paused=False)

    def with_running_count(self) -> MaintenanceTaskQuerySet:
        return self.annotate(
            running_count=models.Count("executions", filter=Q(executions__ended_at__isnull=True))
        )


class MaintenanceTask(models.Model):
    """A registered task, its operator's settings and its shared attempt state."""

    nid = models.CharField(
        _("name"),
        max_length=200,
        unique=True,
        help_text=_("The name the task is registered under in code."),
    )
    maximum_execution_duration = models.DurationField(
        default=timedelta(minutes=5),
        help_text=_(
            "An execution still running after this long is ended by the runner "
            "(terminated) and execution_terminated is sent, so the work can be given back."
        ),
    )
    maximum_concurrent_execution_count = models.PositiveIntegerField(
        _("concurrency override"),
        default=0,
        help_text=_(
            "When above 0, replaces the concurrency declared in code: at most this many "
            "executions of the task run at once."
        ),
    )
    concurrency = models.PositiveIntegerField(
        _("declared concurrency"),
        default=1,
        editable=False,
        help_text=_("The concurrency declared in code, copied here by run_planton."),
    )
    is_paused = models.BooleanField(
        _("paused"),
        default=False,
        help_text=_("A paused task is not attempted; its running executions go on."),
    )
    attempt_number = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text=_("Attempts since the last one that dispatched instructions."),
    )
    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_(
            "When the task is next due. Empty means due now; set it to now to have the "
            "task attempted at once."
        ),
    )
    last_attempted_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_dispatched_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text=_("When the task last dispatched instructions."),
    )
    last_error = models.TextField(
        blank=True,
        default="",
        editable=False,
        help_text=_("The error of the last failed attempt, cleared by a successful one."),
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MaintenanceTaskQuerySet.as_manager()

    class Meta:
        db_table = "maintenance_task"
        ordering = ["nid"]
        verbose_name = _("maintenance task")
        verbose_name_plural = _("maintenance tasks")

    def __str__(self) -> str:
        return self.nid

    @property
    def effective_concurrency(self) -> int:
        """The override when one is set, else the concurrency declared in code."""
        return self.maximum_concurrent_execution_count or self.concurrency


class ExecutionState(models.TextChoices):
    RUNNING = "RUNNING", _("Running")
    COMPLETED = "COMPLETED", _("Completed")


def describe_error(error: BaseException | str | dict[str, Any]) -> dict[str, Any]:
    """A JSON description of an error, for ``MaintenanceTaskExecution.error``."""
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"type": "Error", "message": error}
    return {
        "type": type(error).__qualname__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)),
    }


class MaintenanceTaskExecutionQuerySet(models.QuerySet["MaintenanceTaskExecution"]):
    def running(self) -> MaintenanceTaskExecutionQuerySet:
        # ended_at IS NULL, not state = RUNNING: it is what the partial index covers.
        return self.filter(ended_at__isnull=True)

    def finished(self) -> MaintenanceTaskExecutionQuerySet:
        return self.filter(ended_at__isnull=False)

    def failed(self) -> MaintenanceTaskExecutionQuerySet:
        """Executions that ended with an error (``fail()``, or a receiver that raised)."""
        return self.filter(error__isnull=False)

    def terminated(self) -> MaintenanceTaskExecutionQuerySet:
        return self.filter(terminated_at__isnull=False)

    def for_task(self, name: str) -> MaintenanceTaskExecutionQuerySet:
        return self.filter(maintenance_task__nid=name)

    def overdue(self, now: Any = None) -> MaintenanceTaskExecutionQuerySet:
        """Running executions older than their task's maximum execution duration."""
        deadline = ExpressionWrapper(
            F("started_at") + F("maintenance_task__maximum_execution_duration"),
            output_field=DateTimeField(),
        )
        return self.running().alias(deadline=deadline).filter(deadline__lt=now or timezone.now())

    def complete(self) -> int:
        """Complete the running executions of this queryset in one statement; returns how many."""
        return self._end(error=None)

    def fail(self, error: BaseException | str | dict[str, Any]) -> int:
        """Complete the running executions of this queryset, recording ``error``."""
        return self._end(error=describe_error(error))

    def heartbeat(self) -> int:
        """Record that the running executions of this queryset are still being worked on."""
        return self.running().update(last_seen_at=timezone.now())

    def _end(self, *, error: dict[str, Any] | None) -> int:
        running = self.running()
        # Which tasks to wake is only worth a query when a runner listens in
        # this process; on PostgreSQL a trigger notifies the other processes.
        task_ids: set[int] = set()
        if signals.executions_ended.has_listeners():
            task_ids = set(running.values_list("maintenance_task_id", flat=True).distinct())
        now = timezone.now()
        count = running.update(
            state=ExecutionState.COMPLETED, ended_at=now, last_seen_at=now, error=error
        )
        if count and task_ids:
            announce_ended(task_ids, using=self.db)
        return count

    def terminate(self, reason: str) -> list[MaintenanceTaskExecution]:
        """End the running executions of this queryset as terminated.

        Returns the executions it ended; ``execution_terminated`` is sent for
        each of them once the transaction commits, so that an application can
        give their work back. Rows another process holds locked are left for
        a later round.
        """
        now = timezone.now()
        # Pick the ids first and lock in a second query on the executions
        # table alone: a FOR UPDATE over a join (select_related, or the
        # overdue() filter on the task's duration) would also need the task's
        # row, which a cycle in flight holds, and SKIP LOCKED would then skip
        # the execution. MariaDB has no FOR UPDATE OF to say which table.
        candidates = list(self.running().values_list("pk", flat=True))
        if not candidates:
            return []
        with transaction.atomic(using=self.db):
            ended = list(
                self.model.objects.using(self.db)
                .filter(pk__in=candidates)
                .running()
                .select_for_update(skip_locked=True)
            )
            if not ended:
                return []
            fields = {
                "state": ExecutionState.COMPLETED,
                "ended_at": now,
                "terminated_at": now,
                "terminated_reason": reason,
            }
            self.model.objects.using(self.db).filter(pk__in=[e.pk for e in ended]).update(**fields)
            tasks = MaintenanceTask.objects.using(self.db).in_bulk(
                {execution.maintenance_task_id for execution in ended}
            )
            for execution in ended:
                for name, value in fields.items():
                    setattr(execution, name, value)
                execution.maintenance_task = tasks[execution.maintenance_task_id]
            transaction.on_commit(lambda: _send_terminated(ended, reason), using=self.db)
        return ended


def _send_terminated(executions: Iterable[MaintenanceTaskExecution], reason: str) -> None:
    for execution in executions:
        task_name = execution.maintenance_task.nid
        # The registered task is the sender, as for task_dispatched, so that a
        # receiver can subscribe to one task; a task not registered in this
        # process falls back to the model.
        sender = registry.get_or_none(task_name) or MaintenanceTaskExecution
        signals.send_and_log(
            signals.execution_terminated,
            sender=sender,
            task_name=task_name,
            execution=execution,
            reason=reason,
        )
    signals.executions_ended.send(
        sender=MaintenanceTaskExecution,
        task_ids={execution.maintenance_task_id for execution in executions},
    )


def update_row(
    model: type[models.Model],
    pk: Any,
    values: dict[str, Any],
    *,
    using: str,
    unless_set: str | None = None,
) -> int:
    """``UPDATE`` one row by primary key without building a queryset; returns the row count.

    For the runner's and the receivers' hot paths, where compiling a
    queryset's UPDATE costs several times what the database spends running
    it. ``unless_set`` names a field that must still be NULL.
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

    The SQL comes from the model's metadata and every value is a parameter,
    prepared by its field as ``QuerySet.update()`` would. ``add`` adds to
    integer fields (``F(name) + amount`` without the expression machinery).
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
        return cursor.rowcount


#: The SQL of each kind of ``update_rows()`` call, built once: it runs for
#: every completed execution.
_UPDATE_STATEMENTS: dict[tuple[Any, ...], tuple[str, list[Any]]] = {}


def _update_statement(
    connection: Any,
    model: type[models.Model],
    values: dict[str, Any],
    add: dict[str, int],
    unless_set: str | None,
    shape: str,
) -> tuple[str, list[Any]]:
    quote = connection.ops.quote_name
    meta = model._meta
    fields = [meta.get_field(name) for name in values]
    assignments = [f"{quote(field.column)} = %s" for field in fields]
    for name in add:
        column = quote(meta.get_field(name).column)
        assignments.append(f"{column} = {column} + %s")
    pk_column = quote(meta.pk.column)
    if shape == "one":
        where = f"{pk_column} = %s"
    elif shape == "array":
        where = f"{pk_column} = ANY(%s::bigint[])"
    else:
        where = f"{pk_column} IN ({', '.join(['%s'] * int(shape))})"
    sql = f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} WHERE {where}"
    if unless_set is not None:
        sql += f" AND {quote(meta.get_field(unless_set).column)} IS NULL"
    return sql, fields


def insert_executions(executions: Sequence[MaintenanceTaskExecution], *, using: str) -> None:
    """INSERT new executions in one statement and set their primary keys.

    The runner's write of every dispatched batch. ``bulk_create`` prepares
    every field of every row through the ORM, which cost more than all the
    rest of a busy cycle; here the values shared by the batch (times, host,
    state) are prepared once, and the other columns keep their NULL. On
    PostgreSQL the rows go as two arrays, so the statement is the same for
    any batch size. Without ``RETURNING`` (MySQL), ``bulk_create`` does it.
    """
    if not executions:
        return
    connection = connections[using]
    model = MaintenanceTaskExecution
    if not connection.features.can_return_rows_from_bulk_insert:
        model.objects.using(using).bulk_create(executions)
        return
    first = executions[0]
    meta = model._meta
    quote = connection.ops.quote_name
    names = ("maintenance_task", "instruction", "started_at", "hostname", "state", "created_at")
    fields = [meta.get_field(name) for name in names]
    columns = ", ".join(quote(field.column) for field in fields)
    shared = [
        field.get_db_prep_save(getattr(first, field.attname), connection) for field in fields[2:]
    ]
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    rows: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} ({columns}) "
                "SELECT unnest(%s::bigint[]), unnest(%s::text[]), %s, %s, %s, %s "
                f"RETURNING {pk}",
                [
                    postgres_array([execution.maintenance_task_id for execution in executions]),
                    postgres_array([execution.instruction for execution in executions]),
                    *shared,
                ],
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
                cursor.execute(
                    f"INSERT INTO {table} ({columns}) VALUES {values} RETURNING {pk}", params
                )
                rows += cursor.fetchall()
    if len(rows) != len(executions):
        raise DatabaseError(f"Inserted {len(rows)} executions for {len(executions)}.")
    for execution, (primary_key,) in zip(executions, rows, strict=True):
        execution.pk = primary_key
        execution._state.adding = False
        execution._state.db = using


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


def announce_ended(task_ids: set[int], *, using: str) -> None:
    """Send ``executions_ended`` once the current transaction commits."""
    transaction.on_commit(
        lambda: signals.executions_ended.send(sender=MaintenanceTaskExecution, task_ids=task_ids),
        using=using,
    )


class MaintenanceTaskExecution(models.Model):
    """One dispatched instruction and what became of it."""

    maintenance_task = models.ForeignKey(
        MaintenanceTask,
        on_delete=models.CASCADE,
        related_name="executions",
        db_index=False,  # covered by the named indexes below, as in the reference
        verbose_name=_("task"),
    )
    instruction = models.TextField(help_text=_("What the task's schedule returned."))
    started_at = models.DateTimeField(help_text=_("When the instruction was dispatched."))
    ended_at = models.DateTimeField(null=True, blank=True)
    hostname = models.TextField(  # noqa: DJ001 (nullable as in the reference schema)
        null=True, blank=True, help_text=_("The runner's host.")
    )
    state = models.CharField(
        max_length=16, choices=ExecutionState.choices, default=ExecutionState.RUNNING
    )
    error = models.JSONField(null=True, blank=True, help_text=_("Why the execution failed."))
    terminated_at = models.DateTimeField(null=True, blank=True)
    terminated_reason = models.TextField(null=True, blank=True)  # noqa: DJ001 (as in the reference)
    last_seen_at = models.DateTimeField(
        null=True, blank=True, help_text=_("The last heartbeat of whoever works on it.")
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = MaintenanceTaskExecutionQuerySet.as_manager()

    class Meta:
        db_table = "maintenance_task_execution"
        ordering = ["-started_at", "-id"]
        verbose_name = _("execution")
        verbose_name_plural = _("executions")
        get_latest_by = "started_at"
        permissions = [
            ("terminate_maintenancetaskexecution", _("Can terminate running executions"))
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state=ExecutionState.COMPLETED) | Q(ended_at__isnull=True),
                name="maintenance_task_execution_check",
            ),
            models.CheckConstraint(
                condition=Q(terminated_at__isnull=True) | Q(ended_at__isnull=False),
                name="maintenance_task_execution_check1",
            ),
            models.CheckConstraint(
                condition=Q(state__in=ExecutionState.values),
                name="maintenance_task_execution_state_check",
            ),
        ]
        indexes = [
            # Index names are capped at 30 characters; the reference's longer
            # names are abbreviated (mte = maintenance_task_execution).
            models.Index(fields=["maintenance_task"], name="maintenance_task_id_idx"),
            models.Index(fields=["ended_at", "maintenance_task"], name="mte_ended_at_task_id_idx"),
            models.Index(
                fields=["maintenance_task"],
                condition=Q(ended_at__isnull=True),
                name="mte_running_task_id_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.maintenance_task_id}:{self.instruction}"

    @property
    def duration(self) -> timedelta | None:
        """How long it ran, or has been running so far."""
        if self.started_at is None:
            return None
        return (self.ended_at or timezone.now()) - self.started_at

    @property
    def is_running(self) -> bool:
        return self.ended_at is None

    def _own_queryset(self) -> MaintenanceTaskExecutionQuerySet:
        return type(self).objects.using(self._state.db or "default").filter(pk=self.pk)

    def complete(self) -> bool:
        """Mark the execution completed; False if it had already ended."""
        return self._end(error=None)

    def fail(self, error: BaseException | str | dict[str, Any]) -> bool:
        """Complete the execution with ``error`` recorded; False if it had already ended."""
        return self._end(error=describe_error(error))

    def heartbeat(self) -> bool:
        """Record that the execution is still being worked on; False if it has ended."""
        now = timezone.now()
        seen = bool(self._own_queryset().running().update(last_seen_at=now))
        if seen:
            self.last_seen_at = now
        return seen

    def _end(self, *, error: dict[str, Any] | None) -> bool:
        # The hot path of every receiver: one statement, no read-back.
        using = self._state.db or DEFAULT_DB_ALIAS
        now = timezone.now()
        values = {
            "state": ExecutionState.COMPLETED.value,
            "ended_at": now,
            "last_seen_at": now,
            "error": error,
        }
        ended = update_row(type(self), self.pk, values, using=using, unless_set="ended_at") == 1
        if ended:
            for name, value in values.items():
                setattr(self, name, value)
            if signals.executions_ended.has_listeners():
                announce_ended({self.maintenance_task_id}, using=using)
        return ended

    @contextmanager
    def tracking(self) -> Iterator[MaintenanceTaskExecution]:
        """Complete the execution when the block ends, or fail it with the block's exception.

        The exception is recorded and raised again.
        """
        try:
            yield self
        except Exception as error:
            self.fail(error)
            raise
        self.complete()
