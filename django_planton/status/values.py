"""The fleet's status as frozen values, and the JSON ``planton_status --json`` prints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = ["FleetStatus", "OutcomeCounts", "RunnerStatus", "TaskStatus"]


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

    @property
    def last_error_line(self) -> str:
        """The last error's last line (a traceback's own ends with ``Type: message``)."""
        lines = self.last_error.strip().splitlines()
        return lines[-1] if lines else ""


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
        "lag_seconds": round(task.lag_seconds, 3),
        "last_dispatched_at": _iso(task.last_dispatched_at),
        "last_error": task.last_error,
        "last_hour": {
            "dispatched": hour.dispatched,
            "succeeded": hour.succeeded,
            "failed": hour.failed,
            "terminated": hour.terminated,
        },
    }
