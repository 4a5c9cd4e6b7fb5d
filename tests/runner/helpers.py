"""Plain helpers of the runner's tests: a task's row and its executions."""

from __future__ import annotations

from datetime import timedelta

from django_planton.models import MaintenanceTask, MaintenanceTaskExecution


def row(name: str) -> MaintenanceTask:
    return MaintenanceTask.objects.get(nid=name)


def executions_of(name: str) -> list[MaintenanceTaskExecution]:
    return list(MaintenanceTaskExecution.objects.for_task(name).order_by("pk"))


def instructions_of(name: str) -> list[str]:
    return [execution.instruction for execution in executions_of(name)]


def waits(state: MaintenanceTask) -> timedelta:
    """How long after its last attempt the row says the task is next due."""
    return state.next_attempt_at - state.last_attempted_at
