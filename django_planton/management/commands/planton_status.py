"""``python manage.py planton_status``: the runners and tasks at a glance, or a health check.

The figures come from :mod:`django_planton.status`, like the admin's
dashboard and the Prometheus metrics; this command only lays them out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from ...status import FleetStatus, RunnerStatus, TaskStatus, describe_seconds, fleet_status
from ...status import problems as find_problems


def non_negative_seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} must be a number of seconds, 0 or more")
    return number


class Command(BaseCommand):
    help = (
        "Show the run_planton processes and the tasks: running, next attempt, outcomes of "
        "the last hour, durations, last error. --check exits 1 with one line per problem."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        output = parser.add_mutually_exclusive_group()
        output.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help='Print one JSON object {"runners": [...], "tasks": [...]}.',
        )
        output.add_argument(
            "--check",
            action="store_true",
            help="Exit 1 with one line per problem (no runner alive, a task overdue, a "
            "failed attempt, an execution past its maximum duration), else 0.",
        )
        parser.add_argument(
            "--max-lag",
            type=non_negative_seconds,
            default=60.0,
            help="With --check: seconds a registered, unpaused task may be overdue (default 60).",
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help="The database alias to read (default: 'default').",
        )

    def handle(
        self,
        *,
        as_json: bool,
        check: bool,
        max_lag: float,
        database: str,
        verbosity: int,
        **options: Any,
    ) -> None:
        if database not in connections:
            raise CommandError(f"Unknown database alias {database!r}.")
        status = fleet_status(using=database)
        if as_json:
            self.stdout.write(json.dumps(status.to_json(), indent=2))
        elif check:
            self._check(status, max_lag=max_lag, verbosity=verbosity)
        else:
            self.stdout.write(render(status))

    def _check(self, status: FleetStatus, *, max_lag: float, verbosity: int) -> None:
        found = find_problems(status, max_lag=max_lag)
        for line in found:
            self.stdout.write(line)
        if found:
            self.stdout.flush()
            sys.exit(1)
        if verbosity >= 1:
            alive = sum(runner.alive for runner in status.runners)
            self.stdout.write(f"OK: {alive} runner(s) alive, {len(status.tasks)} task(s).")


# -- the table ------------------------------------------------------------------------


def render(status: FleetStatus) -> str:
    """The runners' and the tasks' tables as text, times relative to the database's clock."""
    alive = sum(runner.alive for runner in status.runners)
    runners = [_runner_row(runner, status.now) for runner in status.runners]
    tasks = [_task_row(task, status.now) for task in status.tasks]
    return "\n".join(
        [
            f"Runners: {alive} alive, {len(runners) - alive} dead",
            *table(["HOST", "PID", "STATE", "STARTED", "LAST SEEN", "TASKS"], runners),
            "",
            f"Tasks: {len(tasks)}",
            *table(
                ["TASK", "RUNNING", "NEXT ATTEMPT", "LAST HOUR", "P50 / P95", "LAST ERROR"], tasks
            ),
        ]
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    if not rows:
        return ["  (none)"]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return [
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def relative(moment: datetime | None, now: datetime) -> str:
    """ "in 12 s", "3 min ago", or "-"."""
    if moment is None:
        return "-"
    seconds = (moment - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    spoken = describe_seconds(seconds)
    return f"in {spoken}" if seconds > 0 else f"{spoken} ago"


def _runner_row(runner: RunnerStatus, now: datetime) -> list[str]:
    return [
        runner.hostname,
        str(runner.pid),
        "alive" if runner.alive else "DEAD",
        relative(runner.started_at, now),
        relative(runner.last_seen_at, now),
        ", ".join(runner.tasks) or "-",
    ]


def _task_row(task: TaskStatus, now: datetime) -> list[str]:
    name = task.name if task.registered else f"{task.name} (not registered)"
    hour = task.last_hour
    outcomes = f"{hour.succeeded} ok, {hour.failed} failed, {hour.terminated} terminated"
    running = f"{task.running}/{task.concurrency}"
    if task.overdue_running:
        running += f" ({task.overdue_running} past max)"
    return [name, running, _next_attempt(task, now), outcomes, _durations(task), _error(task, now)]


def _next_attempt(task: TaskStatus, now: datetime) -> str:
    if task.paused:
        return "paused"
    if task.lag_seconds >= 1:
        return f"overdue by {describe_seconds(task.lag_seconds)}"
    if task.running >= task.concurrency:
        return "waiting for a slot"
    if task.next_attempt_at is None or task.next_attempt_at <= now:
        return "due now"
    return relative(task.next_attempt_at, now)


def _durations(task: TaskStatus) -> str:
    if task.p50_seconds is None or task.p95_seconds is None:
        return "-"
    return f"{describe_seconds(task.p50_seconds)} / {describe_seconds(task.p95_seconds)}"


def _error(task: TaskStatus, now: datetime) -> str:
    if not task.last_error_line:
        return "-"
    return f"{relative(task.last_error_at, now)}: {task.last_error_line[:80]}"
