"""Workload 3: concurrency 1, delay 1 s; an execution ended elsewhere must refill at once.

Each execution is completed ``hold`` seconds after its dispatch, by another
thread of this process (the runner hears of it through the in-process
``executions_ended`` signal) or by another process (:mod:`benchmarks.completer`;
the runner hears of it through the trigger and LISTEN/NOTIFY). The gap,
from the table, is each execution's ``started_at`` minus the previous one's
``ended_at``. A second task that never finds work runs alongside: the busy
task's wake-ups must not wake it.
"""

from __future__ import annotations

import bisect
import itertools
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from django.db import connection, transaction
from django.utils import timezone

from benchmarks.checks import finished_problems, idle_beside_busy_problems
from benchmarks.protocol import Result
from django_planton import Task
from django_planton.models import MaintenanceTaskExecution
from django_planton.runner import Runner, sync_tasks
from django_planton.signals import task_dispatched
from example_site.accounts.models import UserAccount

from .common import CallCounter, Params, Progress, email_task, one_second
from .hooks import CycleStarts
from .meters import Meter, counting, total
from .tables import drained_problems, reset_tables


class Completer(Protocol):
    """Whatever ends the task's executions, and how to wait for it to be done."""

    def wait(self, timeout: float) -> bool: ...
    def close(self) -> None: ...


class ThreadCompleter:
    """A receiver that queues each execution, and a thread that completes it ``hold`` s later."""

    def __init__(self, task: Task, progress: Progress, hold: float) -> None:
        self._progress = progress
        self._hold = hold
        self._pending: queue.Queue[tuple[float, str, Any] | None] = queue.Queue()
        task_dispatched.connect(self._receive, sender=task, weak=False)
        self._thread = threading.Thread(target=self._work, name="bench-completer", daemon=True)
        self._thread.start()

    def _receive(self, sender: Any, *, instruction: str, execution: Any, **kwargs: Any) -> None:
        self._pending.put((time.monotonic() + self._hold, instruction, execution))

    def _work(self) -> None:
        try:
            while (item := self._pending.get()) is not None:
                due, instruction, execution = item
                time.sleep(max(0.0, due - time.monotonic()))
                with transaction.atomic():
                    UserAccount.objects.filter(pk=int(instruction)).update(
                        email_sent_at=timezone.now()
                    )
                    ended = execution.complete()
                self._progress.add(int(ended), 1)
        finally:
            connection.close()

    def wait(self, timeout: float) -> bool:
        return self._progress.done.wait(timeout)

    def close(self) -> None:
        self._pending.put(None)
        self._thread.join(timeout=10)


class ProcessCompleter:
    """``python -m benchmarks.completer``: ends the executions from outside this process."""

    def __init__(self, task_id: int, count: int, hold: float, timeout: float) -> None:
        options = {"--task-id": task_id, "--count": count, "--hold": hold, "--timeout": timeout}
        command = [sys.executable, "-m", "benchmarks.completer"]
        command += [str(part) for option in options.items() for part in option]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        self._process.stdout.readline()  # "ready": it polls before the runner starts

    def wait(self, timeout: float) -> bool:
        try:
            self._process.wait(timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        return self._process.returncode == 0

    def close(self) -> None:
        """Nothing left: :meth:`wait` has reaped the process."""


def gaps_ms(
    rows: Sequence[tuple[datetime, datetime | None]], cycle_starts: Sequence[datetime]
) -> tuple[list[float], list[float]]:
    """Each gap between an execution's ended_at and the next one's started_at.

    ``rows`` are the executions' ``(started_at, ended_at)`` in order of
    start. Also the part of each gap before the cycle that dispatched the
    next execution began (the wake-up: hearing of the end, waking the task,
    handing it to a worker); the rest is the cycle itself up to its dispatch
    (lock the row, read the active instructions, run the schedule).
    """
    starts = sorted(cycle_starts)
    gaps, wakes = [], []
    for (_, ended_at), (started_at, _) in itertools.pairwise(rows):
        if ended_at is None:
            continue
        gaps.append((started_at - ended_at).total_seconds() * 1000)
        # The last cycle that began before this dispatch is the one that made it.
        index = bisect.bisect_right(starts, started_at) - 1
        if index >= 0 and starts[index] >= ended_at:
            wakes.append((starts[index] - ended_at).total_seconds() * 1000)
    return gaps, wakes


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: a measured gap, never one interpolated between two."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def gap_figures(task_name: str, cycle_starts: Sequence[datetime]) -> Result:
    """The gap and wake-up columns of the table, from the task's executions."""
    rows = list(
        MaintenanceTaskExecution.objects.filter(maintenance_task__nid=task_name)
        .order_by("started_at", "id")
        .values_list("started_at", "ended_at")
    )
    gaps, wakes = gaps_ms(rows, cycle_starts)
    return {
        "gap_median_ms": statistics.median(gaps) if gaps else None,
        "gap_p95_ms": percentile(gaps, 0.95) if gaps else None,
        "gap_max_ms": max(gaps) if gaps else None,
        "wake_median_ms": statistics.median(wakes) if wakes else None,
    }


def run(params: Params) -> Result:
    """Refill one slot ``accounts`` times; the figures are the gaps between executions."""
    accounts, hold, timeout = params["accounts"], params["hold"], params["timeout"]
    counter = counting()
    reset_tables(accounts)
    task = email_task("bench_refill", concurrency=1, calculate_delay=one_second)
    idle_calls = CallCounter()
    idle = Task(
        name="bench_refill_idle", schedule=idle_calls, concurrency=1, calculate_delay=one_second
    )
    task_ids = {name: pk for pk, name in sync_tasks([task, idle]).items()}
    progress = Progress(accounts)
    completer: Completer = (
        ThreadCompleter(task, progress, hold)
        if params["completer"] == "thread"
        else ProcessCompleter(task_ids[task.name], accounts, hold, timeout)
    )
    cycle_starts = CycleStarts(task.name)
    runner = Runner([task, idle], around_attempt=cycle_starts.around_attempt)
    meter = Meter(counter)
    meter.start()
    runner.start()
    finished = completer.wait(timeout)
    meter.stop()
    runner.stop(timeout=30)
    completer.close()

    idle_rate = idle_calls.calls / meter.wall if meter.wall else 0.0
    problems = finished_problems(finished, timeout)
    problems += drained_problems(task.name, accounts, 1)
    problems += idle_beside_busy_problems(idle_rate)
    return {
        "instructions": accounts,
        "wall": meter.wall,
        "cpu": meter.cpu,
        "cycles": meter.queries.get("CYCLE", 0),
        "query_total": total(meter.queries),
        **gap_figures(task.name, cycle_starts.starts),
        "idle_attempts_per_s": idle_rate,
        "problems": problems,
    }
