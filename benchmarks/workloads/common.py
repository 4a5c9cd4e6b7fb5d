"""What the workloads share: their tasks, delays and counters, and the drain's figures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from benchmarks.protocol import Result
from django_planton import ScheduleContext, Task
from example_site.accounts.tasks import send_user_email

from .meters import Meter

#: A workload's parameters, as the orchestrator passed them (JSON).
Params = dict[str, Any]


class Progress:
    """Counts ended executions and wakes the main thread once ``target`` is reached."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.ended = 0
        self.not_ended = 0
        self._lock = threading.Lock()
        self.done = threading.Event()
        if target == 0:
            self.done.set()

    def add(self, ended: int, expected: int) -> None:
        """``ended`` of ``expected`` completions really ended an execution."""
        with self._lock:
            self.ended += ended
            self.not_ended += expected - ended
            if self.ended >= self.target:
                self.done.set()


class CallCounter:
    """A schedule that finds nothing and counts how often it was asked.

    While :attr:`recording`, it also notes when each task was asked (wall
    clock, ``time.time()``, which every process of the machine shares), so
    that attempts made by several runner processes can be merged per task.
    """

    def __init__(self) -> None:
        self.calls = 0
        #: Wall-clock times of the calls, by task name, while recording.
        self.times: dict[str, list[float]] = {}
        self.recording = False
        self._lock = threading.Lock()

    def __call__(self, context: ScheduleContext) -> list[str]:
        self.count(context.task_name)
        return []

    def count(self, task_name: str) -> None:
        """One call of ``task_name``'s schedule (a schedule that finds work counts itself too)."""
        with self._lock:
            self.calls += 1
            if self.recording:
                self.times.setdefault(task_name, []).append(time.time())


#: The idle tasks' names: ``bench_idle_00042``.
IDLE_PREFIX = "bench_idle_"


def idle_tasks(count: int, schedule: CallCounter) -> list[Task]:
    """``count`` tasks whose schedules find nothing, delay 1 s: workloads 4 and 6."""
    return [
        Task(name=f"{IDLE_PREFIX}{n:05d}", schedule=schedule, calculate_delay=one_second)
        for n in range(count)
    ]


def drain_delay(attempt_number: int) -> float:
    """0 s after a cycle that found work, 5 ms after an empty one: drain as fast as possible."""
    return 0.0 if attempt_number == 0 else 0.005


def one_second(attempt_number: int) -> float:
    """A delay of 1 s whatever the cycle found: wake-ups, not the delay, must refill slots."""
    return 1.0


def busy_delay(attempt_number: int) -> float:
    """0 s after a cycle that found work, else 1 s: a task with work, among idle ones."""
    return 0.0 if attempt_number == 0 else 1.0


def email_task(name: str, *, concurrency: int, calculate_delay: Callable[[int], float]) -> Task:
    """The example's ``send_user_email`` under a name of the benchmark's own."""
    return Task(
        name=name,
        schedule=send_user_email.schedule,
        concurrency=concurrency,
        calculate_delay=calculate_delay,
    )


def drain_result(
    accounts: int,
    meter: Meter,
    queries: Mapping[str, int],
    *,
    peak_rss_mb: float,
    problems: list[str],
) -> Result:
    """The figures of one drain, django-planton's or a baseline's: what the drain table reads."""
    return {
        "instructions": accounts,
        "wall": meter.wall,
        "cpu": meter.cpu,
        "threads": meter.threads,
        "queries": dict(queries),
        "query_total": sum(queries.values()),
        "peak_rss_mb": peak_rss_mb,
        "problems": problems,
    }
