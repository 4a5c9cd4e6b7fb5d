"""Housekeeping: end executions past their maximum duration, prune old ones."""

from __future__ import annotations

import logging
import threading
import time

from django.db import DatabaseError, connections

from ..conf import planton_settings
from ..core import error_log
from ..models import MaintenanceTaskExecution
from ..sql import read_database_now
from .connections import ensure_usable

__all__ = ["Housekeeper"]

logger = logging.getLogger("django_planton")

# Seconds between two prunes of old executions by a running runner.
PRUNE_INTERVAL = 60.0


class Housekeeper:
    """One round now (:meth:`housekeep`), or rounds every ``interval`` seconds in a thread."""

    def __init__(self, *, using: str, interval: float, stopping: threading.Event) -> None:
        self.using = using
        self.interval = interval
        self._stopping = stopping
        self._last_prune = float("-inf")
        self.thread: threading.Thread | None = None

    def housekeep(self, *, prune: bool = True) -> None:
        """End executions past their maximum duration; prune old completed ones."""
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
