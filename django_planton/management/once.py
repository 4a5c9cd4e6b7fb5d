"""``run_planton --once``: one cycle of each task, then what became of the executions it dispatched.

Cron mails whatever a command prints, and judges it by its exit status: the
summary says how many executions were dispatched, succeeded, failed, were
terminated and still run (read once the receivers have run), and
:attr:`OnceSummary.failures` says what failed, for a status of 1.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core.events import log_dispatched
from ..models import MaintenanceTaskExecution, RunnerProcess
from ..runner import Runner
from ..sql import read_database_now
from ..states import Outcome, outcome_of

__all__ = ["OnceSummary", "run_once"]

# Executions read per statement: well under every database's limit of parameters.
_CHUNK = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class OnceSummary:
    """What one ``--once`` run did."""

    #: The tasks of the run, in order.
    task_names: tuple[str, ...]
    #: How many of the executions it dispatched ended each way (or still run).
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    #: Tasks whose attempt reported an error (their schedule raised, or returned a bad batch).
    schedules_failed: int = 0
    #: The tasks not attempted, each with why (paused, not due, every slot taken).
    waiting: tuple[tuple[str, str], ...] = ()

    @property
    def dispatched(self) -> int:
        return sum(self.outcomes.values())

    def lines(self) -> list[str]:
        """The summary, for the command's output."""
        counts = ", ".join(
            f"{self.outcomes[outcome]} {word}"
            for outcome, word in (
                (Outcome.SUCCEEDED, "succeeded"),
                (Outcome.FAILED, "failed"),
                (Outcome.TERMINATED, "terminated"),
                (Outcome.RUNNING, "still running"),
            )
        )
        lines = [
            f"Ran one cycle of {len(self.task_names)} task(s) ({', '.join(self.task_names)}): "
            f"{self.dispatched} dispatched, {counts}; {self.schedules_failed} schedule(s) failed."
        ]
        lines += [f"  {name}: not attempted, {why}." for name, why in self.waiting]
        return lines

    @property
    def failures(self) -> str:
        """What failed, in one sentence; empty when nothing did."""
        failed = self.outcomes[Outcome.FAILED]
        parts = []
        if self.schedules_failed:
            parts.append(f"{self.schedules_failed} schedule(s)")
        if failed:
            parts.append(f"{failed} of {self.dispatched} execution(s)")
        if not parts:
            return ""
        return f"{' and '.join(parts)} failed; the log says why."


def run_once(runner: Runner) -> OnceSummary:
    """Run ``runner.run_once()`` and read the outcomes of the executions it dispatched.

    They are the executions of the run's tasks that this process (its
    identity, ``host:pid``, is in their ``hostname`` column) started since
    the run began, by the database's clock; their outcomes are read once the
    executors have run the receivers. (Not a ``batch_dispatched`` receiver:
    that would count as one for the tasks that have none.)
    """
    names = tuple(task.name for task in runner.tasks)
    identity = RunnerProcess.identity_of(runner.cycle_runner.hostname, os.getpid())
    since = read_database_now(runner.using)
    reports = runner.run_once()
    for task, report in zip(runner.tasks, reports, strict=True):
        if report.instructions:  # as the loop says it at -v 2
            log_dispatched(task.name, report.instructions)
    ids = list(
        MaintenanceTaskExecution.objects.using(runner.using)
        .filter(hostname=identity, started_at__gte=since, maintenance_task__nid__in=names)
        .values_list("pk", flat=True)
    )
    return OnceSummary(
        task_names=names,
        outcomes=outcomes_of(ids, using=runner.using),
        schedules_failed=sum(bool(report.errors) for report in reports),
        # A cycle that dispatched may say its task is full now: it was attempted.
        waiting=tuple(
            (task.name, report.waiting)
            for task, report in zip(runner.tasks, reports, strict=True)
            if report.waiting is not None and not report.instructions
        ),
    )


def outcomes_of(ids: Sequence[int], *, using: str) -> Counter[Outcome]:
    """How many of these executions ended each way, as the database says now."""
    counts: Counter[Outcome] = Counter()
    for start in range(0, len(ids), _CHUNK):
        rows = (
            MaintenanceTaskExecution.objects.using(using)
            .filter(pk__in=ids[start : start + _CHUNK])
            .values_list("ended_at", "terminated_at", "error")
        )
        counts.update(
            outcome_of(ended_at=ended_at, terminated_at=terminated_at, error=error)
            for ended_at, terminated_at, error in rows
        )
    return counts
