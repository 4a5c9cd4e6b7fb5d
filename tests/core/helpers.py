"""Plain helpers of the core's tests: tiny delays, a call counter, tasks and scripted schedules."""

from __future__ import annotations

import threading

from django_planton.core import ScheduleContext, Task

from ..support import Log, nothing

TINY = 0.002


def tiny_delay(attempt_number: int) -> float:
    return TINY


class Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def __call__(self, *args, **kwargs) -> list:
        """Count a call; usable as a schedule (or get_active) that finds nothing."""
        with self._lock:
            self._value += 1
        return []

    @property
    def value(self) -> int:
        with self._lock:
            return self._value


def task(name="t", schedule=nothing, *, delay=tiny_delay, **kwargs) -> Task:
    return Task(name, schedule, calculate_delay=delay, **kwargs)


def returning(*batches, then=()):
    """A schedule returning ``batches`` one per call, then ``then`` forever; logs contexts."""
    contexts = Log()
    remaining = list(batches)
    lock = threading.Lock()

    def schedule(context: ScheduleContext):
        contexts.append(context)
        with lock:
            if remaining:
                return remaining.pop(0)
        return list(then)

    schedule.contexts = contexts
    return schedule
