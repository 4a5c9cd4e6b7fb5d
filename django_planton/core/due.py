"""When each task is next handed to a worker: a heap of due times.

Not thread-safe on its own: the loop holds its condition around every call.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Due", "DueQueue"]


@dataclass(slots=True, eq=False)
class Due:
    #: When the timer hands the task to a worker.
    at: float
    task_name: str
    #: When the task is due; earlier than ``at`` by the batching slack.
    due_at: float


class DueQueue:
    """At most one pending entry per task; an earlier push supersedes a later one."""

    def __init__(self) -> None:
        # (at, sequence, due): tuples compare in C, and the sequence breaks ties.
        self._heap: list[tuple[float, int, Due]] = []
        #: The same entries by due time, for :meth:`take_due`: a batch takes the
        #: tasks due without looking at the thousands that are not.
        self._by_due: list[tuple[float, int, Due]] = []
        self._sequence = itertools.count()
        #: The entry in force for each task waiting in the heap.
        self.pending: dict[str, Due] = {}

    def push(self, task_name: str, at: float, due_at: float) -> bool:
        """Queue a task for ``at``; False when it is already queued for no later."""
        current = self.pending.get(task_name)
        if current is not None and current.at <= at:
            return False
        due = Due(at, task_name, due_at)
        self.pending[task_name] = due
        sequence = next(self._sequence)
        heapq.heappush(self._heap, (at, sequence, due))
        heapq.heappush(self._by_due, (due_at, sequence, due))
        return True

    def next_at(self) -> float | None:
        """When the earliest task in force is handed out; None when nothing waits."""
        while self._heap:
            due = self._heap[0][2]
            if self.pending.get(due.task_name) is due:
                return due.at
            heapq.heappop(self._heap)  # superseded by an earlier wake-up, or taken
        return None

    def pop(self) -> Due:
        """Take the earliest entry in force (call :meth:`next_at` first)."""
        _, _, due = heapq.heappop(self._heap)
        del self.pending[due.task_name]
        return due

    def take_due(self, now: float, where: Callable[[str], bool]) -> list[str]:
        """Take every pending task due by ``now`` for which ``where(name)`` holds.

        Their heap entries stay behind and are dropped when they surface,
        as superseded entries are. Earliest due first.
        """
        taken: list[str] = []
        passed_over: list[tuple[float, int, Due]] = []
        while self._by_due and self._by_due[0][0] <= now:
            entry = heapq.heappop(self._by_due)
            due = entry[2]
            if self.pending.get(due.task_name) is not due:
                continue  # superseded, or taken
            if where(due.task_name):
                taken.append(due.task_name)
                del self.pending[due.task_name]
            else:
                passed_over.append(entry)
        for entry in passed_over:
            heapq.heappush(self._by_due, entry)
        return taken

    def clear(self) -> None:
        self._heap.clear()
        self._by_due.clear()
        self.pending.clear()
