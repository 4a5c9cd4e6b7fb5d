"""The two tables of django-planton, after the reference schema.

``maintenance_task`` holds one row per registered task: what an operator may
steer (pause, a concurrency override, the maximum execution duration) and the
attempt state that the runners share, so that several ``run_planton``
processes keep one cadence. ``maintenance_task_execution`` holds one row per
dispatched instruction; the rows without ``ended_at`` are the task's active
instructions.
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

from . import retries, signals
from .querysets import (
    FailingInstructionQuerySet,
    MaintenanceTaskExecutionQuerySet,
    MaintenanceTaskQuerySet,
    RunnerProcessQuerySet,
)
from .reconnect import retrying_lost_connections
from .sql import IN_PROCESS_MARKER, DatabaseNow, read_database_now, update_row
from .states import ExecutionState, Outcome, describe_error, ended_values, outcome_of

__all__ = [
    "ExecutionState",
    "FailingInstruction",
    "MaintenanceTask",
    "MaintenanceTaskExecution",
    "Outcome",
    "RunnerProcess",
    "describe_error",
]


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
    saturated_active_count = models.PositiveIntegerField(
        _("waiting for a slot below"),
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "How many executions were active when the last attempt found no free slot; "
            "the task is due again as soon as fewer are. Empty when it found one."
        ),
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


class FailingInstruction(models.Model):
    """An instruction whose last execution failed, held back by its task's retry policy.

    Written in the transaction that ends the failed execution, deleted in the
    one that completes a retry of it (or by an operator's "retry now"). A
    given-up instruction stays until an operator releases it. Pruning old
    executions leaves these rows alone: they are the failure history a
    retry policy needs.
    """

    maintenance_task = models.ForeignKey(
        MaintenanceTask,
        on_delete=models.CASCADE,  # by Django: there is no constraint in the database
        related_name="failing_instructions",
        verbose_name=_("task"),
        # A foreign-key check locks the task's row (KEY SHARE on PostgreSQL, a
        # shared lock on InnoDB), which a cycle in flight holds FOR UPDATE:
        # fail() would wait for the cycle, and deadlock with a schedule that
        # waits on a row the failing worker holds.
        db_constraint=False,
    )
    instruction = models.TextField()
    failures = models.PositiveIntegerField(
        _("failures in a row"), help_text=_("Failed executions since the last success.")
    )
    last_failed_at = models.DateTimeField()
    retry_at = models.DateTimeField(
        _("held back until"),
        null=True,
        blank=True,
        help_text=_("Not dispatched before this time. Empty when given up."),
    )
    given_up_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Not dispatched again until an operator releases it (retry now)."),
    )
    last_error = models.JSONField(null=True, blank=True)

    objects = FailingInstructionQuerySet.as_manager()

    class Meta:
        db_table = "maintenance_task_failing_instruction"
        ordering = ["maintenance_task", "-last_failed_at"]
        verbose_name = _("failing instruction")
        verbose_name_plural = _("failing instructions")

    def __str__(self) -> str:
        return f"{self.maintenance_task_id}:{self.instruction}"

    @property
    def is_given_up(self) -> bool:
        return self.given_up_at is not None


class RunnerProcess(models.Model):
    """One ``run_planton`` process, written when it starts and kept fresh by its heartbeat.

    The times come from the database's clock. ``dead_after`` is computed in
    the heartbeat's own statement (``last_seen_at`` plus three intervals), so
    that every reader can tell a dead runner with one comparison against the
    database's clock, whatever the clocks of the hosts. A clean stop deletes
    the row; a dead runner's row stays a while so that operators see it, and
    is then pruned by housekeeping.
    """

    hostname = models.CharField(max_length=255, help_text=_("The host the runner runs on."))
    pid = models.PositiveIntegerField(_("PID"), help_text=_("The runner's process id."))
    started_at = models.DateTimeField(help_text=_("When the runner started."))
    last_seen_at = models.DateTimeField(help_text=_("The runner's last heartbeat."))
    heartbeat_interval = models.FloatField(help_text=_("Seconds between two heartbeats."))
    dead_after = models.DateTimeField(
        help_text=_("Without a heartbeat by then (three intervals), the runner is dead.")
    )
    tasks = models.JSONField(
        default=list,
        blank=True,
        help_text=_("The tasks the runner runs, each with its executor."),
    )
    version = models.CharField(
        max_length=64, blank=True, default="", help_text=_("The runner's django-planton version.")
    )

    objects = RunnerProcessQuerySet.as_manager()

    class Meta:
        db_table = "planton_runner"
        ordering = ["-started_at", "-id"]
        verbose_name = _("runner")
        verbose_name_plural = _("runners")
        indexes = [models.Index(fields=["dead_after"], name="planton_runner_dead_after_idx")]

    def __str__(self) -> str:
        return self.identity

    @property
    def identity(self) -> str:
        """``host:pid``, the name the runner leaves on the executions it dispatches."""
        return self.identity_of(self.hostname, self.pid)

    @staticmethod
    def identity_of(hostname: str, pid: int) -> str:
        """``host:pid``: what the ``hostname`` column of a runner's executions holds."""
        return f"{hostname}:{pid}"
