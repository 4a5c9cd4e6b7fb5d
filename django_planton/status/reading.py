"""Reading the fleet's status: a fixed number of statements, whatever the number of tasks.

What ``fleet_status()`` costs: one statement for the database's time (none
on SQLite), one for the task rows, one for the runner rows, and three or
four over the executions:

- the outcome counts of the last hour and day, grouped by task with
  conditional counts: one pass over the executions of the last day and the
  running ones, found through the index on ``ended_at`` and the partial one
  on running executions rather than the whole table;
- the executions running past their task's maximum duration, grouped by
  task: the running rows only (the partial index);
- the durations for p50 and p95: the newest :data:`DURATION_SAMPLE`
  executions of each task that ended in the last day, numbered per task in
  SQL (``ROW_NUMBER()``), so at most 200 rows per task come back however
  many thousands each ran; read from the last hour first, and from the day
  only for the tasks the hour did not fill. The percentiles are computed here.

Measured on PostgreSQL 17 (2 cores): 100 tasks with 10,000 executions a
day each (a million rows in the day) take 0.31 s, nearly all of it the
counts; 500 tasks with 345 a day each take 0.8 s, half of it sorting the
day's durations. The time grows with the executions of the last day, so
scrape the metrics every 30 to 60 seconds, not every second.

``task_status()`` reads the same for one task (its executions through the
index on the task).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from ..executors import default_executor
from ..models import MaintenanceTask, MaintenanceTaskExecution, RunnerProcess
from ..querysets import MaintenanceTaskExecutionQuerySet
from ..registry import registry
from ..sql import read_database_now
from ..states import Outcome
from .values import FleetStatus, OutcomeCounts, RunnerStatus, TaskStatus

__all__ = [
    "DURATION_SAMPLE",
    "OUTCOME_FILTERS",
    "describe_executor",
    "fleet_status",
    "percentile",
    "started_since",
    "task_status",
]

#: The most recent executions per task whose durations give p50 and p95.
DURATION_SAMPLE = 200

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# -- reading ---------------------------------------------------------------------


def fleet_status(using: str = DEFAULT_DB_ALIAS) -> FleetStatus:
    """Every runner and task row with their figures, in at most seven statements."""
    now = read_database_now(using)
    rows = MaintenanceTask.objects.using(using).order_by("nid")
    return FleetStatus(
        now=now, runners=_runner_statuses(using, now), tasks=_task_statuses(rows, now, using)
    )


def task_status(name: str, using: str = DEFAULT_DB_ALIAS) -> TaskStatus | None:
    """The status of one task, None when it has no row."""
    now = read_database_now(using)
    found = _task_statuses(MaintenanceTask.objects.using(using).for_task(name), now, using)
    return found[0] if found else None


def _runner_statuses(using: str, now: datetime) -> list[RunnerStatus]:
    return [
        RunnerStatus(
            hostname=row.hostname,
            pid=row.pid,
            started_at=row.started_at,
            last_seen_at=row.last_seen_at,
            alive=row.dead_after >= now,  # RunnerProcessQuerySet.alive(), at this call's time
            tasks=[entry["name"] for entry in row.tasks or [] if isinstance(entry, dict)],
            version=row.version,
        )
        for row in RunnerProcess.objects.using(using).order_by("hostname", "pid")
    ]


def _task_statuses(rows: QuerySet[MaintenanceTask], now: datetime, using: str) -> list[TaskStatus]:
    tasks = list(rows)
    if not tasks:
        return []
    executions = MaintenanceTaskExecution.objects.using(using).all()
    if len(tasks) == 1:
        executions = executions.filter(maintenance_task_id=tasks[0].pk)
    counts = _outcome_counts(executions, now)
    overdue = _overdue_counts(executions, now)
    durations = _duration_samples(executions, now, [task.pk for task in tasks])
    return [
        _task_status(
            task, now, counts.get(task.pk, {}), overdue.get(task.pk, 0), durations.get(task.pk, [])
        )
        for task in tasks
    ]


def _task_status(
    task: MaintenanceTask,
    now: datetime,
    counts: dict[str, Any],
    overdue: int,
    durations: list[float],
) -> TaskStatus:
    running = counts.get("running", 0)
    concurrency = task.effective_concurrency
    durations.sort()
    return TaskStatus(
        name=task.nid,
        registered=task.nid in registry,
        executor=describe_executor(task.nid),
        paused=task.is_paused,
        running=running,
        concurrency=concurrency,
        attempt_number=task.attempt_number,
        next_attempt_at=task.next_attempt_at,
        lag_seconds=_lag_seconds(task, now, saturated=running >= concurrency),
        last_attempted_at=task.last_attempted_at,
        last_dispatched_at=task.last_dispatched_at,
        last_error=task.last_error,
        last_error_at=task.last_attempted_at if task.last_error else None,
        last_hour=_window_counts(counts, "hour"),
        last_day=_window_counts(counts, "day"),
        p50_seconds=percentile(durations, 0.50),
        p95_seconds=percentile(durations, 0.95),
        oldest_running_started_at=counts.get("oldest_running"),
        overdue_running=overdue,
        maximum_execution_duration=task.maximum_execution_duration,
    )


def describe_executor(name: str) -> str | None:
    """Where the task's receivers run, as this process's registry says; None if unregistered."""
    if name not in registry:
        return None
    chosen = registry.executor_of(name)
    return repr(chosen) if chosen is not None else f"{default_executor()!r} (PLANTON_EXECUTOR)"


def _lag_seconds(task: MaintenanceTask, now: datetime, *, saturated: bool) -> float:
    """How long the task has been due without an attempt.

    A paused task is never due, nor one whose every slot is taken (it waits
    for an execution to end). An empty ``next_attempt_at`` means "due now":
    since the row was last saved (created, or cleared by an operator).
    """
    if task.is_paused or saturated:
        return 0.0
    due_at = task.next_attempt_at or task.updated_at
    return max(0.0, (now - due_at).total_seconds())


def started_since(now: datetime, window: timedelta) -> Q:
    """Executions started since ``now - window``.

    The test on ``ended_at`` adds nothing (such an execution is running or
    ended later) but lets the database use the indexes on ``ended_at``
    instead of reading the whole table, which has none on ``started_at``.
    """
    start = now - window
    return Q(started_at__gte=start) & (Q(ended_at__gte=start) | Q(ended_at__isnull=True))


OUTCOME_FILTERS = {
    Outcome.RUNNING: Q(ended_at__isnull=True),
    Outcome.SUCCEEDED: Q(ended_at__isnull=False, terminated_at__isnull=True, error__isnull=True),
    Outcome.FAILED: Q(ended_at__isnull=False, terminated_at__isnull=True, error__isnull=False),
    Outcome.TERMINATED: Q(terminated_at__isnull=False),
}


def _outcome_counts(
    executions: MaintenanceTaskExecutionQuerySet, now: datetime
) -> dict[int, dict[str, Any]]:
    """Per task id: running now, the oldest running start, and each window's counts by outcome."""
    aggregates: dict[str, Any] = {
        "running": Count("id", filter=Q(ended_at__isnull=True)),
        "oldest_running": Min("started_at", filter=Q(ended_at__isnull=True)),
    }
    for label, window in (("hour", HOUR), ("day", DAY)):
        started = Q(started_at__gte=now - window)
        aggregates[f"{label}_dispatched"] = Count("id", filter=started)
        for outcome, selects in OUTCOME_FILTERS.items():
            aggregates[f"{label}_{outcome.value}"] = Count("id", filter=started & selects)
    rows = (
        executions.filter(started_since(now, DAY) | Q(ended_at__isnull=True))
        .order_by()
        .values("maintenance_task_id")
        .annotate(**aggregates)
    )
    return {row["maintenance_task_id"]: dict(row) for row in rows}


def _window_counts(counts: dict[str, Any], label: str) -> OutcomeCounts:
    return OutcomeCounts(
        dispatched=counts.get(f"{label}_dispatched", 0),
        succeeded=counts.get(f"{label}_succeeded", 0),
        failed=counts.get(f"{label}_failed", 0),
        terminated=counts.get(f"{label}_terminated", 0),
        running=counts.get(f"{label}_running", 0),
    )


def _overdue_counts(executions: MaintenanceTaskExecutionQuerySet, now: datetime) -> dict[int, int]:
    rows = (
        executions.overdue(now)
        .order_by()
        .values("maintenance_task_id")
        .annotate(count=Count("id"))
        .values_list("maintenance_task_id", "count")
    )
    return dict(rows)


def _duration_samples(
    executions: MaintenanceTaskExecutionQuerySet, now: datetime, task_ids: list[int]
) -> dict[int, list[float]]:
    """Per task id, the durations in seconds of its newest executions ended in the last day.

    The last hour first: a busy task has its whole sample there, and the
    database sorts an hour's rows instead of a day's. Only the tasks that
    ended fewer than :data:`DURATION_SAMPLE` executions in the hour are read
    again over the day (a second statement, when there are any).
    """
    ended = executions.filter(terminated_at__isnull=True)
    samples = _newest_durations(ended.filter(ended_at__gte=now - HOUR))
    short = [task_id for task_id in task_ids if len(samples.get(task_id, ())) < DURATION_SAMPLE]
    if short:
        day = ended.filter(ended_at__gte=now - DAY)
        if len(short) < len(task_ids):
            day = day.filter(maintenance_task_id__in=short)
        samples.update(_newest_durations(day))
    return samples


def _newest_durations(executions: MaintenanceTaskExecutionQuerySet) -> dict[int, list[float]]:
    """The durations of each task's newest :data:`DURATION_SAMPLE` executions, numbered in SQL."""
    duration = ExpressionWrapper(F("ended_at") - F("started_at"), output_field=DurationField())
    newest_first = Window(
        RowNumber(), partition_by=[F("maintenance_task_id")], order_by=F("ended_at").desc()
    )
    rows = (
        executions.order_by()
        .annotate(took=duration, row_number=newest_first)
        .filter(row_number__lte=DURATION_SAMPLE)
        .values_list("maintenance_task_id", "took")
    )
    samples: dict[int, list[float]] = {}
    for task_id, took in rows:
        samples.setdefault(task_id, []).append(took.total_seconds())
    return samples


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile of sorted values, linearly interpolated; None when empty."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)
