"""One task's charts: executions per minute by outcome, and how many ran at once.

Both read one task's executions of the window: grouped by minute in SQL
for the first (one row per minute at most), at most :data:`CHART_ROWS`
start and end times for the second, swept here.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Count, Q
from django.db.models.functions import TruncMinute

from ..models import MaintenanceTaskExecution
from ..sql import read_database_now
from ..states import Outcome
from .reading import OUTCOME_FILTERS, started_since

__all__ = ["CHART_ROWS", "executions_per_minute", "running_over_time"]

#: The most executions :func:`running_over_time` reads for one chart.
CHART_ROWS = 100_000

MINUTE = timedelta(minutes=1)


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
        outcome.value: Count("id", filter=selects) for outcome, selects in OUTCOME_FILTERS.items()
    }
    rows = (
        MaintenanceTaskExecution.objects.using(using)
        .for_task(task_name)
        .filter(started_since(now, now - _minute_of(now - since)))
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
