"""Housekeeping: end executions past their maximum duration or of dead runners; prune.

A runner is dead when its row in ``planton_runner`` has missed three
heartbeats (:mod:`.heartbeat`). The executions it was running in its own
process (tasks whose executor is ``Inline`` or ``Threads``) will never end,
so they are ended as terminated, naming the runner, instead of holding their
slots until their maximum duration. Executions handed to an outside worker
(Django's tasks framework, Celery) are that worker's, and left to it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.db import DatabaseError, connections, transaction

from ..conf import planton_settings
from ..core import error_log
from ..models import MaintenanceTaskExecution, RunnerProcess
from ..sql import read_database_now
from .connections import ensure_usable
from .heartbeat import MISSED_BEATS, Heartbeat

__all__ = ["Housekeeper"]

logger = logging.getLogger("django_planton")

# Seconds between two prunes of old executions by a running runner.
PRUNE_INTERVAL = 60.0

# How long a dead runner's row stays, shown as dead, before pruning deletes it.
DEAD_RUNNERS_KEPT = timedelta(hours=1)


class Housekeeper:
    """One round now (:meth:`housekeep`), or rounds every ``interval`` seconds in a thread."""

    def __init__(self, *, using: str, interval: float, stopping: threading.Event) -> None:
        self.using = using
        self.interval = interval
        self._stopping = stopping
        self._last_prune = float("-inf")
        self.thread: threading.Thread | None = None
        #: This process's own heartbeat, if it has one: its row is never treated as dead.
        self.heartbeat: Heartbeat | None = None

    def housekeep(self, *, prune: bool = True) -> None:
        """End overdue executions and dead runners' ones; prune old executions and runners."""
        self.end_dead_runners_work()
        overdue = MaintenanceTaskExecution.objects.using(self.using).overdue()
        for execution in overdue.terminate("maximum execution duration exceeded"):
            logger.warning(
                "Terminated execution %s of task %s (instruction %s): ran longer than %s",
                execution.pk,
                execution.maintenance_task.nid,
                execution.instruction,
                execution.maintenance_task.maximum_execution_duration,
                extra={
                    "task_name": execution.maintenance_task.nid,
                    "instruction": execution.instruction,
                },
            )
        if prune:
            self.prune()
            self.prune_runners()

    def end_dead_runners_work(self) -> list[MaintenanceTaskExecution]:
        """End as terminated the executions that dead runners ran in their own process.

        Only a runner that heartbeats itself judges others, and only once its
        own beats have reached the database for three of the dead runner's
        intervals in a row: after an outage every row looks dead, and the
        runners that survived it must have had time to beat again. So
        ``run_planton --once``, which has no row, leaves dead runners alone.

        Each dead row is locked (SKIP LOCKED) for the round, so that only one
        runner acts on it; the row stays, shown as dead, until it is pruned.
        Acting on it again next round ends nothing new, but catches an
        execution another process held locked this time.
        """
        ended: list[MaintenanceTaskExecution] = []
        if self.heartbeat is None or not (steady := self.heartbeat.steady_for()):
            return ended
        rows = RunnerProcess.objects.using(self.using).dead()
        if self.heartbeat.row_id is not None:
            rows = rows.exclude(pk=self.heartbeat.row_id)
        with transaction.atomic(using=self.using):
            dead = rows.filter(heartbeat_interval__lte=steady / MISSED_BEATS).select_for_update(
                skip_locked=True
            )
            for runner in dead:
                ended += self._end_work_of(runner)
        return ended

    def _end_work_of(self, runner: RunnerProcess) -> list[MaintenanceTaskExecution]:
        in_process = [task["name"] for task in runner.tasks if task.get("in_process")]
        if not in_process:
            return []
        executions = MaintenanceTaskExecution.objects.using(self.using).filter(
            hostname=runner.identity,
            maintenance_task__nid__in=in_process,
            started_at__gte=runner.started_at,
        )
        # The same host:pid may come back (a container restarted): what a later
        # runner of that identity dispatched is its own.
        successor = (
            RunnerProcess.objects.using(self.using)
            .filter(hostname=runner.hostname, pid=runner.pid, started_at__gt=runner.started_at)
            .order_by("started_at")
            .values_list("started_at", flat=True)
            .first()
        )
        if successor is not None:
            executions = executions.filter(started_at__lt=successor)
        last_seen = runner.last_seen_at.isoformat(sep=" ", timespec="seconds")
        reason = f"runner {runner.identity} stopped heartbeating (last seen {last_seen})"
        ended = executions.terminate(reason)
        for execution in ended:
            logger.warning(
                "Terminated execution %s of task %s (instruction %s): %s",
                execution.pk,
                execution.maintenance_task.nid,
                execution.instruction,
                reason,
                extra={
                    "task_name": execution.maintenance_task.nid,
                    "instruction": execution.instruction,
                },
            )
        return ended

    def prune_runners(self) -> int:
        """Delete the rows of runners dead for longer than :data:`DEAD_RUNNERS_KEPT`."""
        cutoff = read_database_now(self.using) - DEAD_RUNNERS_KEPT
        deleted, _ = RunnerProcess.objects.using(self.using).filter(dead_after__lt=cutoff).delete()
        return deleted

    def prune(self) -> int:
        """Delete completed executions older than PLANTON_KEEP_COMPLETED_EXECUTIONS.

        The failure history a retry policy needs is in ``FailingInstruction``,
        which pruning leaves alone.
        """
        keep = planton_settings().keep_completed_executions
        if keep is None:
            return 0
        cutoff = read_database_now(self.using) - keep
        old = MaintenanceTaskExecution.objects.using(self.using).finished()
        deleted, _ = old.filter(ended_at__lt=cutoff).delete()
        return deleted

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="planton-housekeeping", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while not self._stopping.wait(self.interval):
                ensure_usable(self.using)
                prune_due = time.monotonic() - self._last_prune >= PRUNE_INTERVAL
                try:
                    self.housekeep(prune=prune_due)
                    if prune_due:
                        self._last_prune = time.monotonic()
                except DatabaseError as error:
                    # Every round fails alike during an outage: the traceback once.
                    error_log.report("Housekeeping failed", error)
        finally:
            connections[self.using].close()
