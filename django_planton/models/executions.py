"""``maintenance_task_execution``: one row per dispatched instruction, and how it ends.

The rows without ``ended_at`` are the task's active instructions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from typing import Any

from django.db import DEFAULT_DB_ALIAS, models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .. import retries, signals
from ..querysets import MaintenanceTaskExecutionQuerySet
from ..reconnect import retrying_lost_connections
from ..sql import IN_PROCESS_MARKER, DatabaseNow, read_database_now, update_row
from ..states import ExecutionState, Outcome, describe_error, ended_values, outcome_of
from .tasks import MaintenanceTask

__all__ = ["MaintenanceTaskExecution"]


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
    attempt = models.PositiveIntegerField(
        default=1,
        help_text=_("1 for an instruction's first execution; one more after each failure."),
    )
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

    @property
    def outcome(self) -> Outcome:
        """Running, Succeeded, Failed or Terminated (see :class:`Outcome`)."""
        return outcome_of(
            ended_at=self.ended_at, terminated_at=self.terminated_at, error=self.error
        )

    def _own_queryset(self) -> MaintenanceTaskExecutionQuerySet:
        return type(self).objects.using(self._state.db or "default").filter(pk=self.pk)

    def complete(self) -> bool:
        """Mark the execution completed; False if it had already ended.

        A lost connection is retried for a while (:mod:`django_planton.reconnect`).
        """
        return self._retrying(partial(self._end, error=None), "complete()")

    def fail(self, error: BaseException | str | dict[str, Any]) -> bool:
        """Complete the execution with ``error`` recorded; False if it had already ended."""
        return self._retrying(partial(self._end, error=describe_error(error)), "fail()")

    def heartbeat(self) -> bool:
        """Record that the execution is still being worked on; False if it has ended."""
        return self._retrying(self._heartbeat, "heartbeat()")

    def _retrying(self, operation: Callable[[], bool], what: str) -> bool:
        using = self._state.db or DEFAULT_DB_ALIAS
        return retrying_lost_connections(using, operation, what=f"Execution {self.pk}: {what}")

    def _heartbeat(self) -> bool:
        seen = bool(self._own_queryset().running().update(last_seen_at=DatabaseNow()))
        if seen:
            self._reload_on_access("last_seen_at")
        return seen

    def _end(self, *, error: dict[str, Any] | None) -> bool:
        using = self._state.db or DEFAULT_DB_ALIAS
        notified = True
        if error is None and self.attempt <= 1:
            # The hot path of every receiver: one statement, stamped by the
            # database's clock, no read-back (the times load on access).
            values = ended_values(DatabaseNow(), error=None)
            # A runner of this process refills the slot: no NOTIFY to the others.
            notified = not signals.wakes_in_process(self.maintenance_task_id)
            comment = "" if notified else IN_PROCESS_MARKER
            ended = update_row(
                type(self), self.pk, values, using=using, unless_set="ended_at", comment=comment
            )
            if ended:
                self.state, self.error = values["state"], None
                self._reload_on_access("ended_at", "last_seen_at")
        else:
            # A failure, or the success of a retry: the retry bookkeeping
            # commits with the ending, so the next cycle sees both or neither.
            with transaction.atomic(using=using):
                now = read_database_now(using)
                values = ended_values(now, error=error)
                ended = update_row(type(self), self.pk, values, using=using, unless_set="ended_at")
                if ended:
                    retries.record_outcome(self, now, error, using=using)
            if ended:
                for name, value in values.items():
                    setattr(self, name, value)
        if ended and signals.executions_ended.has_listeners():
            just_ended = {self.maintenance_task_id: [self.instruction]}
            signals.announce_ended(
                set(just_ended), using=using, notified=notified, instructions=just_ended
            )
        return bool(ended)

    def _reload_on_access(self, *names: str) -> None:
        """Forget fields the database set, so that reading one loads it (deferred)."""
        for name in names:
            self.__dict__.pop(name, None)

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
