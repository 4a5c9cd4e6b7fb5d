"""After a cycle commits: its signals go out (through the task's executor), and a failing
receiver fails its execution."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from django.db import DatabaseError

from .. import signals
from ..core import Task, log_error
from ..executors import executor_for
from ..models import MaintenanceTaskExecution

__all__ = ["LATE_START", "dispatch", "run_receivers", "send_schedule_failed"]

logger = logging.getLogger("django_planton")


def dispatch(task: Task, executions: Sequence[MaintenanceTaskExecution]) -> None:
    """Send ``batch_dispatched`` here, then hand the executions to the task's executor.

    The executor runs ``task_dispatched``'s receivers (:func:`run_receivers`)
    for each execution, in this thread or elsewhere (:mod:`..executors`).
    """
    signals.send_and_log(
        signals.batch_dispatched, sender=task, task_name=task.name, executions=executions
    )
    executor_for(task).submit(task, executions)


#: Seconds after its hand-over past which an execution is looked up before its
#: receivers run: it may have been ended meanwhile (its maximum duration, an operator).
LATE_START = 1.0


def run_receivers(
    task: Task, execution: MaintenanceTaskExecution, *, handed_at: float | None = None
) -> None:
    """Send ``task_dispatched`` for one execution; a receiver that raises fails it.

    ``handed_at`` (``time.monotonic()``) is when the executor took it: one
    that starts late (behind a slow receiver, or a busy pool) is first looked
    up, and its receivers do not run if it has ended meanwhile, so that work
    already given back (``execution_terminated``) is not done twice. On time,
    nothing is read.
    """
    if handed_at is not None and time.monotonic() - handed_at > LATE_START and _ended(execution):
        logger.info(
            "Execution %s of task %s ended before its receivers started (%s); they do not run.",
            execution.pk,
            task.name,
            execution.terminated_reason or "ended",
            extra={"task_name": task.name, "instruction": execution.instruction},
        )
        return
    for error in signals.send_and_log(
        signals.task_dispatched,
        sender=task,
        task_name=task.name,
        instruction=execution.instruction,
        execution=execution,
    ):
        try:
            execution.fail(error)
        except DatabaseError as database_error:
            # Left running, it ends through its maximum duration; the rest
            # of the batch still goes to its receivers.
            log_error(task.name, database_error)


def _ended(execution: MaintenanceTaskExecution) -> bool:
    """Whether the execution has ended, as the database says now (False when it cannot say)."""
    try:
        row = (
            type(execution)
            .objects.using(execution._state.db or "default")
            .filter(pk=execution.pk)
            .values("ended_at", "terminated_reason")
            .first()
        )
    except DatabaseError:
        return False  # the receivers find out themselves
    if row is None or row["ended_at"] is None:
        return row is None
    execution.terminated_reason = row["terminated_reason"]
    return True


def send_schedule_failed(task: Task, errors: Sequence[BaseException]) -> None:
    for error in errors:
        signals.send_and_log(signals.schedule_failed, sender=task, task_name=task.name, error=error)
