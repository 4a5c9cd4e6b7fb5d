"""The executor's contract, the one that runs receivers in the cycle's thread, and what
the bridges share."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import DatabaseError

if TYPE_CHECKING:
    from ..core import Task
    from ..models import MaintenanceTaskExecution

__all__ = ["STOPPED_REASON", "Executor", "Inline", "fail_unsent"]

logger = logging.getLogger("django_planton")

#: The reason given to executions whose receivers had not started when the runner stopped.
STOPPED_REASON = "the runner stopped before its receivers ran"


class Executor:
    """Runs the ``task_dispatched`` receivers of executions handed to it after a cycle commits.

    :meth:`submit` must return quickly: it runs in the cycle's thread.
    :meth:`wait` and :meth:`stop` are for the runner: the first for
    ``run_planton --once``, the second for a graceful shutdown.
    """

    def submit(self, task: Task, executions: Sequence[MaintenanceTaskExecution]) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every execution handed over so far has had its receivers run."""
        return True

    def stop(self, timeout: float | None = None) -> bool:
        """Let running receivers finish (within ``timeout``); end those not started.

        Returns True when every receiver that was running finished in time.
        """
        return True

    def close_connections(self) -> None:
        """Close the database connections of receivers that are done (none are running)."""

    def receivers_running(self) -> int:
        """How many receivers are at work in this process now (a shutdown waits for them)."""
        return 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Inline(Executor):
    """In the cycle's thread, one execution after another (the behaviour before executors)."""

    def submit(self, task: Task, executions: Sequence[MaintenanceTaskExecution]) -> None:
        from ..runner.dispatch import run_receivers

        handed_at = time.monotonic()
        for execution in executions:
            run_receivers(task, execution, handed_at=handed_at)


def fail_unsent(
    task: Task, execution: MaintenanceTaskExecution, error: BaseException, *, where: str
) -> None:
    """An execution a bridge could not hand over (its queue is down): fail it with the error.

    The rest of the batch still goes; the failure is the retry policy's to
    hold back. Should the database be down too, the execution ends through
    its maximum duration.
    """
    logger.error(
        "Task %s: handing execution %s to %s failed: %s",
        task.name,
        execution.pk,
        where,
        error,
        extra={"task_name": task.name, "instruction": execution.instruction},
    )
    try:
        execution.fail(error)
    except DatabaseError as database_error:
        logger.error(
            "Task %s: could not fail execution %s: %s; it ends through its maximum duration.",
            task.name,
            execution.pk,
            database_error,
        )
