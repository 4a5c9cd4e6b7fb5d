"""After a cycle commits: its signals go out, and a failing receiver fails its execution."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import DatabaseError

from .. import signals
from ..core import Task, log_error
from ..models import MaintenanceTaskExecution

__all__ = ["dispatch", "send_schedule_failed"]


def dispatch(task: Task, executions: Sequence[MaintenanceTaskExecution]) -> None:
    """Send ``batch_dispatched``, then ``task_dispatched`` for each execution, in order."""
    signals.send_and_log(
        signals.batch_dispatched, sender=task, task_name=task.name, executions=executions
    )
    for execution in executions:
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
                # Left running, it ends through its maximum duration; the
                # rest of the batch still goes to its receivers.
                log_error(task.name, database_error)


def send_schedule_failed(task: Task, errors: Sequence[BaseException]) -> None:
    for error in errors:
        signals.send_and_log(signals.schedule_failed, sender=task, task_name=task.name, error=error)
