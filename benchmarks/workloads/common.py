"""What the workloads share: their tasks, delays and counters, and the drain's figures."""

from __future__ import annotations

import threading
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
    """A schedule that finds nothing and counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, context: ScheduleContext) -> list[str]:
        with self._lock:
            self.calls += 1
        return []


def drain_delay(attempt_number: int) -> float:
    """0 s after a cycle that found work, 5 ms after an empty one: drain as fast as possible."""
    return 0.0 if attempt_number == 0 else 0.005


def one_second(attempt_number: int) -> float:
    """A delay of 1 s whatever the cycle found: wake-ups, not the delay, must refill slots."""
    return 1.0


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
