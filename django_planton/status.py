"""The fleet's status: runners, tasks, outcome counts, durations, read from the database.

The one place for these figures: the admin's dashboard, ``planton_status``
and the Prometheus metrics all read them from here, so they agree. Every
function only reads, and every time is compared with the database's clock
(read once per call), never this host's.

What a call costs (``fleet_status()``, whatever the number of tasks): one
statement for the database's time (none on SQLite), one for the task rows,
one for the runner rows, and three over the executions:

- the outcome counts of the last hour and day, grouped by task with
  conditional counts: one scan of the executions that started in the last
  day, through the index on ``ended_at`` (and the partial one on running
  executions) rather than the whole table;
- the executions running past their task's maximum duration, grouped by
  task: the running rows only (the partial index);
- the durations for p50 and p95: the last :data:`DURATION_SAMPLE`
  executions of each task that ended in the last day, numbered per task in
  SQL (``ROW_NUMBER()``), so at most 500 x 200 rows for 500 tasks however
  many thousands of executions each ran in the day; the percentiles are
  computed here.

The charts' functions (:func:`executions_per_minute`, :func:`running_over_time`)
read one task's executions of the window: grouped by minute in SQL for the
first, at most :data:`CHART_ROWS` start and end times for the second.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, QuerySet, Window
from django.db.models.functions import RowNumber, TruncMinute

from .executors import default_executor
from .models import MaintenanceTask, MaintenanceTaskExecution, RunnerProcess
from .querysets import MaintenanceTaskExecutionQuerySet
from .registry import registry
from .sql import read_database_now
from .states import Outcome

__all__ = [
    "CHART_ROWS",
    "DURATION_SAMPLE",
    "FleetStatus",
    "OutcomeCounts",
    "RunnerStatus",
    "TaskStatus",
    "describe_seconds",
    "executions_per_minute",
    "fleet_status",
    "percentile",
    "problems",
    "running_over_time",
    "task_status",
]

#: The most recent executions per task whose durations give p50 and p95.
DURATION_SAMPLE = 200
#: The most executions :func:`running_over_time` reads for one chart.
CHART_ROWS = 100_000

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutcomeCounts:
    """The executions a task dispatched in a window (an hour, a day), by what became of them.

    ``dispatched`` is the sum of the other four.
    """

    dispatched: int = 0
    succeeded: int = 0
    failed: int = 0
    terminated: int = 0
    running: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStatus:
    """One task's row and what its executions say, as of :attr:`FleetStatus.now`."""

    name: str
    #: Whether this process's registry knows the task (a row may outlive its code).
    registered: bool
    #: Where its receivers run, as this process's registry says; None when unregistered.
    executor: str | None
    paused: bool
    running: int
    #: The concurrency override when set, else the one declared in code.
    concurrency: int
    attempt_number: int
    next_attempt_at: datetime | None
    #: Seconds past due by the database's clock; 0 when not due, paused or every slot taken.
    lag_seconds: float
    last_attempted_at: datetime | None
    last_dispatched_at: datetime | None
    last_error: str
    #: When the failed attempt was (its ``last_attempted_at``); None without an error.
    last_error_at: datetime | None
    last_hour: OutcomeCounts
    last_day: OutcomeCounts
    #: Durations of the executions that ended in the last day, terminated ones aside.
    p50_seconds: float | None
    p95_seconds: float | None
    oldest_running_started_at: datetime | None
    #: Executions running past the task's maximum execution duration.
    overdue_running: int
    maximum_execution_duration: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerStatus:
    """One ``run_planton`` process's row; ``alive`` by the database's clock."""

    hostname: str
    pid: int
    started_at: datetime
    last_seen_at: datetime
    alive: bool
    tasks: list[str]
    version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetStatus:
    """Every runner and every task row, read at ``now`` (the database's clock)."""

    now: datetime
    runners: list[RunnerStatus]
    tasks: list[TaskStatus]

    def to_json(self) -> dict[str, Any]:
        """The shape ``planton_status --json`` prints; datetimes as ISO 8601 strings."""
        return {
            "runners": [
                {
                    "hostname": runner.hostname,
                    "pid": runner.pid,
                    "started_at": _iso(runner.started_at),
                    "last_seen_at": _iso(runner.last_seen_at),
                    "alive": runner.alive,
                }
                for runner in self.runners
            ],
            "tasks": [_task_json(task) for task in self.tasks],
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _task_json(task: TaskStatus) -> dict[str, Any]:
    hour = task.last_hour
    return {
        "name": task.name,
        "running": task.running,
        "concurrency": task.concurrency,
        "paused": task.paused,
        "attempt_number": task.attempt_number,
        "next_attempt_at": _iso(task.next_attempt_at),
        "lag_seconds": task.lag_seconds,
        "last_dispatched_at": _iso(task.last_dispatched_at),
        "last_error": task.last_error,
        "last_hour": {
            "dispatched": hour.dispatched,
            "succeeded": hour.succeeded,
            "failed": hour.failed,
            "terminated": hour.terminated,
        },
    }


# -- reading ---------------------------------------------------------------------


def fleet_status(using: str = DEFAULT_DB_ALIAS) -> FleetStatus:
    """Every runner and task row with their figures, in six statements whatever their number."""
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
    durations = _duration_samples(executions, now)
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


def _since(now: datetime, window: timedelta) -> Q:
    """Executions started since ``now - window``.

    The test on ``ended_at`` adds nothing (such an execution is running or
    ended later) but lets the database use the indexes on ``ended_at``
    instead of reading the whole table, which has none on ``started_at``.
    """
    start = now - window
    return Q(started_at__gte=start) & (Q(ended_at__gte=start) | Q(ended_at__isnull=True))


_OUTCOME_FILTERS = {
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
        for outcome, selects in _OUTCOME_FILTERS.items():
            aggregates[f"{label}_{outcome.value}"] = Count("id", filter=started & selects)
    rows = (
        executions.filter(_since(now, DAY) | Q(ended_at__isnull=True))
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
    executions: MaintenanceTaskExecutionQuerySet, now: datetime
) -> dict[int, list[float]]:
    """Per task id, the durations in seconds of its last executions ended in the last day."""
    duration = ExpressionWrapper(F("ended_at") - F("started_at"), output_field=DurationField())
    newest_first = Window(
        RowNumber(), partition_by=[F("maintenance_task_id")], order_by=F("ended_at").desc()
    )
    rows = (
        executions.filter(ended_at__gte=now - DAY, terminated_at__isnull=True)
        .order_by()
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


# -- problems (planton_status --check) ------------------------------------------------


def problems(status: FleetStatus, *, max_lag: float = 60) -> list[str]:
    """One line per problem an operator should hear about; empty when all is well.

    No runner alive; a registered task that is not paused and is overdue by
    more than ``max_lag`` seconds; a task whose last attempt failed; an
    execution running past its task's maximum duration.
    """
    found: list[str] = []
    if not any(runner.alive for runner in status.runners):
        found.append(_no_runner(status))
    for task in status.tasks:
        if task.registered and not task.paused and task.lag_seconds > max_lag:
            found.append(f"{task.name}: overdue by {describe_seconds(task.lag_seconds)}.")
        if task.last_error:
            found.append(f"{task.name}: {_failed_attempt(task, status.now)}")
        if task.overdue_running:
            limit = describe_seconds(task.maximum_execution_duration.total_seconds())
            found.append(
                f"{task.name}: {task.overdue_running} execution(s) running past "
                f"the maximum duration of {limit}."
            )
    return found


def _no_runner(status: FleetStatus) -> str:
    if not status.runners:
        return "No run_planton process is alive (none has recorded itself)."
    last = max(runner.last_seen_at for runner in status.runners)
    ago = describe_seconds((status.now - last).total_seconds())
    return f"No run_planton process is alive (the last one was seen {ago} ago)."


def _failed_attempt(task: TaskStatus, now: datetime) -> str:
    first_line = task.last_error.strip().splitlines()[-1] if task.last_error.strip() else ""
    when = ""
    if task.last_error_at is not None:
        when = f" {describe_seconds((now - task.last_error_at).total_seconds())} ago"
    return f"the last attempt failed{when}: {first_line[:200]}"


def describe_seconds(seconds: float) -> str:
    """A duration as people say it: "12 s", "3 min", "2 h 5 min", "3 d"."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d"


# -- charts ---------------------------------------------------------------------------


def _minutes(start: datetime, end: datetime) -> list[datetime]:
    """The starts of the minutes from the one holding ``start`` to the one holding ``end``."""
    first = _minute_of(start)
    count = int((end - first) // MINUTE) + 1
    return [first + index * MINUTE for index in range(count)]


def _minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def executions_per_minute(
    task_name: str, *, since: timedelta, using: str = DEFAULT_DB_ALIAS
) -> list[tuple[datetime, dict[str, int]]]:
    """The task's executions dispatched in each minute of the window, by outcome value.

    Every minute of the window is listed, from the oldest, with a count for
    each outcome (zeros included). Grouped by minute in SQL: at most one
    row per minute comes back, whatever the number of executions.
    """
    now = read_database_now(using)
    minute = TruncMinute("started_at", tzinfo=UTC)
    aggregates = {
        outcome.value: Count("id", filter=selects) for outcome, selects in _OUTCOME_FILTERS.items()
    }
    rows = (
        MaintenanceTaskExecution.objects.using(using)
        .for_task(task_name)
        .filter(_since(now, now - _minute_of(now - since)))
        .order_by()
        .annotate(minute=minute)
        .values("minute")
        .annotate(**aggregates)
    )
    found: dict[datetime, dict[str, int]] = {}
    for row in rows:
        counts: dict[str, Any] = dict(row)
        found[_utc(counts.pop("minute"))] = counts
    empty = dict.fromkeys(Outcome.values, 0)
    return [(start, {**empty, **found.get(start, {})}) for start in _minutes(now - since, now)]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment


def running_over_time(
    task_name: str, *, since: timedelta, using: str = DEFAULT_DB_ALIAS
) -> list[tuple[datetime, int]]:
    """The most executions of the task running at once in each minute of the window.

    Read from the start and end times of the executions that ran in the
    window (at most :data:`CHART_ROWS`, the newest; beyond, the earliest
    minutes undercount), then swept here minute by minute.
    """
    now = read_database_now(using)
    start = _minute_of(now - since)
    rows = list(
        MaintenanceTaskExecution.objects.using(using)
        .for_task(task_name)
        .filter(Q(ended_at__gte=start) | Q(ended_at__isnull=True), started_at__lte=now)
        .order_by("-started_at")
        .values_list("started_at", "ended_at")[:CHART_ROWS]
    )
    return _peaks_per_minute(rows, start, now)


def _peaks_per_minute(
    spans: Sequence[tuple[datetime, datetime | None]], start: datetime, now: datetime
) -> list[tuple[datetime, int]]:
    """Sweep the start (+1) and end (-1) events; an end before a start at the same instant."""
    events = sorted(
        [(began, 1) for began, _ in spans]
        + [(ended, -1) for _, ended in spans if ended is not None]
    )
    minutes = _minutes(start, now)
    times = [moment for moment, _ in events]
    first = bisect.bisect_right(times, minutes[0])
    running = sum(change for _, change in events[:first])
    peaks: list[tuple[datetime, int]] = []
    index = first
    for minute_start in minutes:
        peak = running
        while index < len(events) and events[index][0] < minute_start + MINUTE:
            running += events[index][1]
            peak = max(peak, running)
            index += 1
        peaks.append((minute_start, peak))
    return peaks
