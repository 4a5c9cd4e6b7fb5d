"""After a cycle commits: its signals go out (through the task's executor), and a failing
receiver fails its execution."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import DatabaseError

from .. import signals
from ..core import Task, log_error
from ..executors import executor_for
from ..models import MaintenanceTaskExecution

__all__ = ["dispatch", "run_receivers", "send_schedule_failed"]


def dispatch(task: Task, executions: Sequence[MaintenanceTaskExecution]) -> None:
    """Send ``batch_dispatched`` here, then hand the executions to the task's executor.

    The executor runs ``task_dispatched``'s receivers (:func:`run_receivers`)
    for each execution, in this thread or elsewhere (:mod:`..executors`).
    """
    signals.send_and_log(
        signals.batch_dispatched, sender=task, task_name=task.name, executions=executions
    )
    executor_for(task).submit(task, executions)


def run_receivers(task: Task, execution: MaintenanceTaskExecution) -> None:
    """Send ``task_dispatched`` for one execution; a receiver that raises fails it."""
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


def send_schedule_failed(task: Task, errors: Sequence[BaseException]) -> None:
    for error in errors:
        signals.send_and_log(signals.schedule_failed, sender=task, task_name=task.name, error=error)
