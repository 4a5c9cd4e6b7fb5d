"""Every wake-up of one process, in one object.

A task is *woken* when a slot may have freed (an execution ended) and
*forced* when new work is known to wait (a ``wake_on_change`` trigger). The
loop asks this object whether a wake-up is worth an attempt now, the cycle
runner takes the wake-ups of the tasks it attempts, and both tell it what an
attempt found: one owner, so that no two parts of the runner keep their own
copy of the same facts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable

__all__ = ["WakeUps"]


class WakeUps:
    """Wake-up state of one process: thread-safe, plain Python."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Tasks whose last attempt dispatched work: attempted alone, never batched.
        self._busy: set[str] = set()
        #: Woken while their cycle ran, and when (``time.monotonic()``): attempted
        #: again right after it, unless that cycle read its running executions later.
        self._after_cycle: dict[str, float] = {}
        #: The instructions ended by those wake-ups, when every one of them said
        #: (None: at least one did not, a notification from another process).
        self._ended_after: dict[str, set[str] | None] = {}
        #: When a cycle last read each task's running executions.
        self._states_read: dict[str, float] = {}
        #: The instructions that cycle saw running or dispatched: an ending of
        #: any other one was already seen ended by its read.
        self._seen_running: dict[str, Collection[str]] = {}
        #: Woken since their last cycle began: may run before their next attempt time.
        self._woken: set[str] = set()
        #: Forced since their last cycle began: run whatever their back-off.
        self._forced: set[str] = set()
        #: Attempt numbers as this process last saw them on the task's row.
        self._attempt_numbers: dict[str, int] = {}
        #: Task names by row id, so that a re-created row still gets its wake-ups.
        self._names_by_id: dict[int, str] = {}
        #: Tasks whose last schedule ran longer than a batch's time budget: attempted alone.
        self._slow: set[str] = set()

    # -- wake-up sources -----------------------------------------------------

    def wake(self, task_name: str, *, force: bool = False) -> bool:
        """Record a wake-up and say whether it is worth an attempt now.

        A plain wake-up counts only while the task's last attempt (as seen
        here) found work or found every slot taken, attempt number 0: an idle
        task keeps backing off, and its wake-ups cost nothing. ``force``
        wakes it whatever its back-off.
        """
        with self._lock:
            if force:
                self._forced.add(task_name)
            elif self._attempt_numbers.get(task_name, 0) > 0:
                return False  # backing off: a freed slot is no news to it
            else:
                self._woken.add(task_name)
            # A freed slot likely means work: attempted alone, not in a batch.
            self._busy.add(task_name)
            return True

    def names_for_ids(self, task_ids: Iterable[int]) -> set[str]:
        """The names of the tasks with these row ids, as far as this process has seen them."""
        with self._lock:
            return {self._names_by_id[pk] for pk in task_ids if pk in self._names_by_id}

    # -- the cycle runner ----------------------------------------------------

    def take(self, task_names: Iterable[str]) -> tuple[set[str], set[str]]:
        """The woken and the forced among ``task_names``, for the cycle that starts now."""
        names = set(task_names)
        with self._lock:
            woken, forced = self._woken & names, self._forced & names
            self._woken -= woken
            self._forced -= forced
        return woken, forced

    def saw_row(self, task_id: int, task_name: str, attempt_number: int) -> None:
        """A cycle read the task's row: learn its id and attempt number."""
        with self._lock:
            self._names_by_id[task_id] = task_name
            self._attempt_numbers[task_name] = attempt_number

    def learn_ids(self, names_by_id: dict[int, str]) -> None:
        with self._lock:
            self._names_by_id.update(names_by_id)

    def attempted(self, task_name: str, attempt_number: int) -> None:
        """A cycle wrote the task's new attempt number."""
        with self._lock:
            self._attempt_numbers[task_name] = attempt_number

    # -- the loop --------------------------------------------------------------

    def finished(self, task_name: str, *, dispatched: bool) -> None:
        """The loop saw an attempt end; one that dispatched nothing makes the task quiet."""
        if not dispatched and task_name not in self._busy:
            return  # quiet, and was: most attempts of most tasks, so no lock
        with self._lock:
            if dispatched:
                self._busy.add(task_name)
            else:
                self._busy.discard(task_name)

    def is_quiet(self, task_name: str) -> bool:
        """Whether the task may share a batch: its last attempt dispatched nothing, quickly."""
        return task_name not in self._busy and task_name not in self._slow

    def schedule_took(self, task_name: str, *, slow: bool) -> None:
        """A cycle ran the task's schedule: a slow one is attempted alone until it is fast again.

        So that one slow schedule never again keeps a batch's other rows
        locked while it runs.
        """
        with self._lock:
            if slow:
                self._slow.add(task_name)
            else:
                self._slow.discard(task_name)

    def defer(self, task_name: str, ended: Collection[str] | None = None) -> None:
        """Woken while its cycle runs: attempt it again right after.

        ``ended``: the instructions whose ending woke it, when known.
        """
        with self._lock:
            if task_name not in self._after_cycle:
                self._ended_after[task_name] = set()
            self._after_cycle[task_name] = time.monotonic()
            known = self._ended_after.get(task_name)
            if known is not None and ended is not None:
                known.update(ended)
            else:
                self._ended_after[task_name] = None

    def states_read(self, task_names: Iterable[str]) -> None:
        """A cycle is about to read these tasks' running executions.

        A wake-up comes after the ending it announces has committed: one
        that came before this read is seen by it, and needs no cycle of its own.
        """
        now = time.monotonic()
        with self._lock:
            for name in task_names:
                self._states_read[name] = now
                self._seen_running.pop(name, None)

    def saw_running(self, task_name: str, instructions: Collection[str]) -> None:
        """The cycle that read the task's running executions saw these run, or dispatched them.

        Kept as given (not copied): every attempt of every task calls this.
        """
        with self._lock:
            self._seen_running[task_name] = instructions

    def take_deferred(self, task_name: str) -> bool:
        """Whether the task was woken while its cycle ran, after the cycle's read (and forget it).

        A busy task's every ending wakes it; without this test, each cycle
        that refilled the slots would be followed by one that finds none free.
        """
        if task_name not in self._after_cycle:
            return False  # not woken during its cycle: most attempts, so no lock
        with self._lock:
            woken_at = self._after_cycle.pop(task_name, None)
            ended = self._ended_after.pop(task_name, None)
            if woken_at is None or woken_at < self._states_read.get(task_name, float("-inf")):
                return False
            seen = self._seen_running.get(task_name)
            if ended is not None and seen is not None and ended.isdisjoint(seen):
                # Each ending told of its instruction, and the read saw none of
                # them running: they had committed before it, their slots refilled.
                return False
            self._busy.add(task_name)  # woken: attempted alone
            return True
