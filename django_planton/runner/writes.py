"""What a cycle writes: its executions, and each task's new attempt state.

Tasks whose new state is alike (same change of attempt number, same delay)
share one UPDATE, so a batch of idle tasks with the same back-off costs one
statement; a batch's executions go in one INSERT. Signals go out on commit.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from ..core import CycleReport, DelayBounds, Task
from ..models import ExecutionState, MaintenanceTask, MaintenanceTaskExecution, RunnerProcess
from ..sql import DatabaseNow, DatabaseNowPlus, TaskRow, insert_executions, update_rows
from .dispatch import dispatch, send_schedule_failed
from .sandbox import Attempt

__all__ = ["AttemptWriter", "sync_tasks"]


def full_waiting(running: int) -> str:
    """Why a task whose every slot is taken dispatches nothing, for an operator."""
    return f"every slot taken ({running} running): due when one frees"


def attempt_state(
    delay: float, *, dispatched_at: datetime | None = None, error: str = ""
) -> dict[str, Any]:
    """The fields an attempt sets on its task's row (the attempt number aside).

    ``dispatched_at``, when the attempt dispatched, is its executions' start.
    The attempt is stamped, and its next one counted, by the database's
    time at the write itself: a time carried forward from the cycle's first
    statement may lag behind it by as long as that statement took, and
    another runner would then find the task due early.
    """
    state: dict[str, Any] = {
        "next_attempt_at": DatabaseNowPlus(delay),
        "last_attempted_at": DatabaseNow(),
        "last_error": error if len(error) <= _MOST_ERROR else _shortened(error),
        "updated_at": DatabaseNow(),
    }
    if dispatched_at is not None:
        state["last_dispatched_at"] = dispatched_at
    return state


#: The longest ``last_error`` kept on a task's row, in characters.
_MOST_ERROR = 8000


def describe_errors(errors: Sequence[BaseException]) -> str:
    """A failed attempt's ``last_error``: ``Type: message`` first, then the tracebacks.

    Lists show the first line; the task's page shows it all; the traceback's
    own last line repeats the message, for tools that read the last line.
    """
    message = "; ".join(f"{type(error).__name__}: {error}" for error in errors)
    tracebacks = [
        "".join(traceback.format_exception(error)).rstrip()
        for error in errors
        if error.__traceback__ is not None
    ]
    return "\n\n".join([message, *tracebacks])


def _shortened(error: str) -> str:
    """The first line, and as much of the end (the innermost frames) as fits."""
    first = error.split("\n", 1)[0][: _MOST_ERROR // 4]
    tail = error[-(_MOST_ERROR - len(first) - 10) :]
    return f"{first}\n\n[...]\n{tail}"


def sync_tasks(tasks: Sequence[Task], *, using: str = DEFAULT_DB_ALIAS) -> dict[int, str]:
    """Create or update a ``maintenance_task`` row for every task; return their names by id.

    Run at start-up, so that the admin lists tasks before they ever run and
    shows the concurrency declared in code.
    """
    if not tasks:
        return {}
    rows = MaintenanceTask.objects.using(using)
    # MySQL and MariaDB upsert on any unique key and refuse to be told which.
    with_target = connections[using].features.supports_update_conflicts_with_target
    rows.bulk_create(
        [MaintenanceTask(nid=task.name, concurrency=task.concurrency) for task in tasks],
        update_conflicts=True,
        unique_fields=["nid"] if with_target else None,
        update_fields=["concurrency"],
    )
    names = [task.name for task in tasks]
    return dict(rows.filter(nid__in=names).values_list("pk", "nid"))


class AttemptWriter:
    """Writes a batch's attempts inside the cycle's transaction; one per cycle runner.

    Each execution's ``hostname`` column holds the runner's identity,
    ``host:pid`` (:attr:`RunnerProcess.identity`): when the runner dies, the
    others' housekeeping finds the executions it ran in its own process by
    it. The column is text in the reference schema, so no column changes.
    """

    def __init__(self, *, using: str, hostname: str, bounds: DelayBounds) -> None:
        self.using = using
        self.hostname = hostname
        self.identity = RunnerProcess.identity_of(hostname, os.getpid())
        self.bounds = bounds

    def write(self, attempts: list[Attempt], now: datetime) -> dict[str, tuple[CycleReport, int]]:
        """Write the batch; returns each task's report and new attempt number, by name."""
        results: dict[str, tuple[CycleReport, int]] = {}
        dispatches: list[tuple[Task, list[MaintenanceTaskExecution]]] = []
        groups: dict[tuple[bool, int, float, bool, int | None], list[int]] = {}
        for attempt in attempts:
            task, row, outcome = attempt.task, attempt.row, attempt.outcome
            if outcome is None:
                results[task.name] = self._record_failure(task, row, attempt.errors, now)
                continue
            next_attempt = self.bounds.next_attempt(
                task, outcome.attempt_number, saturated=outcome.saturated
            )
            # A task that found every slot taken is due again once one frees.
            running = attempt.running
            if outcome.instructions and next_attempt.stored <= 0:
                # Due again at once, it would find the slots it just filled
                # all taken: say so now, and save the cycle that finds it out.
                running += len(outcome.instructions)
            full = running if running >= attempt.concurrency else None
            if full is not None and not outcome.saturated:
                next_attempt = self.bounds.next_attempt(
                    task, outcome.attempt_number, saturated=True
                )
            if outcome.instructions:
                dispatches.append((task, self._executions(attempt, outcome.instructions, now)))
            reset = outcome.attempt_number == 0
            added = 0 if reset else outcome.attempt_number - row.attempt_number
            key = (reset, added, next_attempt.stored, bool(outcome.instructions), full)
            groups.setdefault(key, []).append(row.pk)
            report = CycleReport(
                delay=next_attempt.wait,
                instructions=outcome.instructions,
                errors=(next_attempt.error,) if next_attempt.error is not None else (),
                waiting=None if full is None else full_waiting(running),
            )
            results[task.name] = (report, outcome.attempt_number)
        dispatched_at = self._insert(dispatches)
        for (reset, added, delay, dispatched, full), pks in groups.items():
            state = attempt_state(delay, dispatched_at=dispatched_at if dispatched else None)
            state["saturated_active_count"] = full
            if reset:
                state["attempt_number"] = 0
            increment = {"attempt_number": added} if added else None
            update_rows(MaintenanceTask, pks, state, using=self.using, add=increment)
        return results

    def _insert(
        self, dispatches: list[tuple[Task, list[MaintenanceTaskExecution]]]
    ) -> datetime | None:
        """Insert the executions, send them on commit; returns when they started, if any."""
        if not dispatches:
            return None
        executions = [execution for _, batch in dispatches for execution in batch]
        insert_executions(executions, using=self.using)
        for task, batch in dispatches:
            transaction.on_commit(partial(dispatch, task, batch), using=self.using)
        return executions[0].started_at

    def _executions(
        self, attempt: Attempt, instructions: Sequence[str], now: datetime
    ) -> list[MaintenanceTaskExecution]:
        task_row = attempt.row.instance(self.using)
        return [
            MaintenanceTaskExecution(
                maintenance_task=task_row,
                instruction=instruction,
                attempt=attempt.execution_attempt(instruction),
                started_at=now,
                hostname=self.identity,
                state=ExecutionState.RUNNING,
                created_at=now,
            )
            for instruction in instructions
        ]

    def _record_failure(
        self, task: Task, row: TaskRow, errors: tuple[BaseException, ...], now: datetime
    ) -> tuple[CycleReport, int]:
        """Record a failed attempt on the locked row; ``schedule_failed`` goes out on commit."""
        attempt_number = row.attempt_number + 1
        next_attempt = self.bounds.next_attempt(task, attempt_number)
        state = attempt_state(next_attempt.stored, error=describe_errors(errors))
        state["attempt_number"] = attempt_number
        state["saturated_active_count"] = None
        update_rows(MaintenanceTask, [row.pk], state, using=self.using)
        transaction.on_commit(partial(send_schedule_failed, task, errors), using=self.using)
        if next_attempt.error is not None:
            errors = (*errors, next_attempt.error)
        return CycleReport(delay=next_attempt.wait, errors=errors), attempt_number
