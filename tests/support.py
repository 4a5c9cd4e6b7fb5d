"""Helpers shared by the tests of the core and of the Django layer; plain Python.

Background work is polled with :func:`wait_until`, never timed exactly, and
what threads hand back is collected in a thread-safe :class:`Log`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from django_planton.core import ErrorEvent, ScheduleContext, TaskEvent


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.002) -> Any:
    """Poll ``predicate`` until it returns something true or ``timeout`` seconds pass.

    Returns the last value of ``predicate``, so ``assert wait_until(...)`` fails
    with something to look at.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Log:
    """A thread-safe list of whatever the loop, a schedule or a receiver hands us."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []

    def append(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)

    @property
    def items(self) -> list[Any]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __getitem__(self, index: int) -> Any:
        with self._lock:
            return self._items[index]


class Recorder:
    """Collects a Planton's ``on_task`` and ``on_error`` events."""

    def __init__(self) -> None:
        self.task_events = Log()
        self.error_events = Log()

    def on_task(self, event: TaskEvent) -> None:
        self.task_events.append(event)

    def on_error(self, event: ErrorEvent) -> None:
        self.error_events.append(event)

    def instructions(self, task_name: str | None = None) -> list[str]:
        return [
            event.instruction
            for event in self.task_events.items
            if task_name is None or event.task_name == task_name
        ]

    def errors(self, task_name: str | None = None) -> list[BaseException]:
        return [
            event.error
            for event in self.error_events.items
            if task_name is None or event.task_name == task_name
        ]


def nothing(context: ScheduleContext) -> list[str]:
    """A schedule that finds nothing."""
    return []


def no_active(task_name: str) -> list[str]:
    """Active instructions of a Planton without a database: none."""
    return []


def scripted(*batches: Sequence[Any], then: Sequence[Any] = ()) -> Callable[[ScheduleContext], Any]:
    """A schedule that returns ``batches`` one per call, then ``then`` forever.

    Its ``contexts`` attribute logs the :class:`ScheduleContext` of every call.
    """
    contexts = Log()
    remaining = list(batches)
    lock = threading.Lock()

    def schedule(context: ScheduleContext) -> Any:
        contexts.append(context)
        with lock:
            if remaining:
                return remaining.pop(0)
        return list(then)

    schedule.contexts = contexts  # type: ignore[attr-defined]
    return schedule
