"""Failing instructions: recorded when an execution fails, forgotten when a retry succeeds.

One place for the bookkeeping behind :class:`~django_planton.RetryPolicy`,
called inside the transaction that ends the execution (``fail()``,
``complete()`` of a retry, termination), so that the next cycle sees the
ending and the hold together. The policy is the registered task's; a task
this process does not know (a worker that registers fewer tasks) gets the
default policy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .core import DEFAULT_RETRY, RetryPolicy
from .registry import registry
from .sql import later

if TYPE_CHECKING:
    from .models import MaintenanceTaskExecution

__all__ = ["forget_failures", "policy_for", "record_failures", "record_outcome"]

logger = logging.getLogger("django_planton")


def policy_for(task_name: str) -> RetryPolicy | None:
    """The retry policy of the task registered under ``task_name``."""
    task = registry.get_or_none(task_name)
    return DEFAULT_RETRY if task is None else task.retry


def record_outcome(
    execution: MaintenanceTaskExecution,
    now: datetime,
    error: dict[str, Any] | None,
    *,
    using: str,
) -> None:
    """After ``execution`` ended at ``now``: hold its instruction back, or forget its failures."""
    if error is None:
        if execution.attempt > 1:
            forget_failures([execution], using=using)
        return
    record_failures([execution], now, error, using=using)


def record_failures(
    executions: Iterable[MaintenanceTaskExecution],
    now: datetime,
    error: dict[str, Any] | None,
    *,
    using: str,
) -> None:
    """Hold back the instructions of failed ``executions`` as their tasks' policies say."""
    from .models import FailingInstruction, MaintenanceTask

    executions = list(executions)
    names = dict(
        MaintenanceTask.objects.using(using)
        .filter(pk__in={execution.maintenance_task_id for execution in executions})
        .values_list("pk", "nid")
    )
    rows = FailingInstruction.objects.using(using)
    for execution in executions:
        task_name = names.get(execution.maintenance_task_id)
        policy = policy_for(task_name) if task_name is not None else None
        if policy is None:
            continue
        failures = execution.attempt
        given_up = policy.gives_up(failures)
        values = {
            "failures": failures,
            "last_failed_at": now,
            "retry_at": None if given_up else later(now, policy.hold_back(failures)),
            "given_up_at": now if given_up else None,
            "last_error": error,
        }
        # An instruction runs once at a time per task, so its failures never
        # race one another: update, or insert the first one.
        key = {
            "maintenance_task_id": execution.maintenance_task_id,
            "instruction": execution.instruction,
        }
        if not rows.filter(**key).update(**values):
            rows.create(**key, **values)
        if given_up:
            logger.warning(
                "Gave up instruction %s of task %s after %d failure(s) in a row; "
                "release it in the admin (retry now) to dispatch it again",
                execution.instruction,
                task_name,
                failures,
                extra={"task_name": task_name, "instruction": execution.instruction},
            )


def forget_failures(executions: Iterable[MaintenanceTaskExecution], *, using: str) -> None:
    """A retry succeeded: its instruction is no longer failing."""
    from .models import FailingInstruction

    rows = FailingInstruction.objects.using(using)
    for execution in executions:
        rows.filter(
            maintenance_task_id=execution.maintenance_task_id, instruction=execution.instruction
        ).delete()
