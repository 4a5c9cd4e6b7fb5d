"""What an operator should hear about: the rules of ``planton_status --check``."""

from __future__ import annotations

from datetime import datetime

from .values import FleetStatus, TaskStatus

__all__ = ["describe_seconds", "problems"]


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
    when = ""
    if task.last_error_at is not None:
        when = f" {describe_seconds((now - task.last_error_at).total_seconds())} ago"
    return f"the last attempt failed{when}: {task.last_error_line[:200]}"


def describe_seconds(seconds: float) -> str:
    """A duration as people say it: "40 ms", "12 s", "3 min", "2 h 5 min", "3 d"."""
    seconds = abs(seconds)
    if seconds < 0.9995:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{round(hours / 24)} d"
