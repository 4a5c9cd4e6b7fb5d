"""The worker's side of the queue bridges: one execution's receivers, if it still runs.

Shared by :mod:`.tasks` (Django's tasks framework) and :mod:`.celery`: the
task each of them ships calls :func:`run_in_worker` in the worker process.
"""

from __future__ import annotations

import logging

__all__ = ["run_in_worker"]

logger = logging.getLogger("django_planton")


def run_in_worker(execution_id: int, task_name: str, using: str) -> str:
    """Send ``task_dispatched`` for one execution in this (worker) process; says what it did.

    An execution that is gone or no longer running (terminated meanwhile, or
    ended) is left alone, with a log line saying why. A task that this
    process did not register fails the execution with a clear error.
    """

    from ..models import MaintenanceTaskExecution
    from ..registry import registry
    from ..runner.dispatch import run_receivers as send_to_receivers

    execution = (
        MaintenanceTaskExecution.objects.using(using)
        .select_related("maintenance_task")
        .filter(pk=execution_id)
        .first()
    )
    if execution is None:
        logger.info(
            "Execution %s of task %s is gone (pruned); nothing to do.", execution_id, task_name
        )
        return "gone"
    if not execution.is_running:
        why = execution.terminated_reason or "it has ended"
        logger.info(
            "Execution %s of task %s is no longer running (%s); its receivers are not run.",
            execution_id,
            task_name,
            why,
            extra={"task_name": task_name, "instruction": execution.instruction},
        )
        return f"not running: {why}"
    task = registry.get_or_none(task_name)
    if task is None:
        error = LookupError(
            f"Task {task_name!r} is not registered in this worker process: register it in an "
            "AppConfig.ready() of an installed app, as for run_planton."
        )
        execution.fail(error)
        raise error
    send_to_receivers(task, execution)
    return "ran"
