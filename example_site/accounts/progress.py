"""What the demo reports: a snapshot of the accounts and of the scheduler's executions.

Everything is read from the database, not counted from signals, so the
figures are the same ones the admin shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q

from django_planton import Task
from django_planton.models import MaintenanceTaskExecution

from .models import UserAccount


@dataclass(frozen=True, slots=True)
class TaskFigures:
    """The executions of one task, by outcome."""

    name: str
    dispatched: int
    completed: int
    failed: int
    terminated: int
    running: int

    def describe(self) -> str:
        return (
            f"{self.name}: {self.dispatched} instruction(s) dispatched, "
            f"{self.completed} completed, {self.failed} failed, {self.terminated} terminated"
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Where the accounts and the executions stand at one moment."""

    owed: int
    sent: int
    purgeable: int
    tasks: tuple[TaskFigures, ...]

    @property
    def running(self) -> int:
        return sum(figures.running for figures in self.tasks)

    @property
    def finished(self) -> bool:
        """Every account served, every purge done, no execution still running."""
        return not (self.owed or self.purgeable or self.running)


def take_snapshot(
    tasks: Sequence[Task], *, since: datetime | None = None, using: str = "default"
) -> Snapshot:
    """Count, in a handful of queries, what the progress line and the summary show.

    Executions count from ``since`` on, so a run on a database with history
    reports its own work only.
    """
    accounts = UserAccount.objects.using(using)
    counts = accounts.aggregate(
        owed=Count("pk", filter=Q(email_sent_at__isnull=True, deleted_at__isnull=True)),
        sent=Count("pk", filter=Q(email_sent_at__isnull=False, deleted_at__isnull=True)),
    )
    executions = (
        MaintenanceTaskExecution.objects.using(using)
        .filter(maintenance_task__nid__in=[task.name for task in tasks])
        .filter(**({"started_at__gte": since} if since else {}))
        .values("maintenance_task__nid")
        .order_by()
        .annotate(
            dispatched=Count("pk"),
            running=Count("pk", filter=Q(ended_at__isnull=True)),
            failed=Count("pk", filter=Q(ended_at__isnull=False, error__isnull=False)),
            terminated=Count("pk", filter=Q(terminated_at__isnull=False)),
            completed=Count(
                "pk",
                filter=Q(ended_at__isnull=False, error__isnull=True, terminated_at__isnull=True),
            ),
        )
    )
    by_name = {row.pop("maintenance_task__nid"): row for row in executions}
    empty = {"dispatched": 0, "running": 0, "failed": 0, "terminated": 0, "completed": 0}
    return Snapshot(
        owed=counts["owed"],
        sent=counts["sent"],
        purgeable=accounts.purgeable().count(),
        tasks=tuple(TaskFigures(name=task.name, **by_name.get(task.name, empty)) for task in tasks),
    )


def progress_line(snapshot: Snapshot, *, sent_before: int, elapsed: float, width: int = 30) -> str:
    """One line: a bar of e-mails sent by this run out of those owed, executions, rate."""
    done = snapshot.sent - sent_before
    total = done + snapshot.owed
    filled = round(width * done / total) if total else width
    rate = done / elapsed if elapsed > 0 else 0.0
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} e-mails sent, "
        f"{snapshot.running} running, {rate:.0f}/s, {elapsed:.1f} s"
    )
