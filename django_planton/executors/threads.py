"""The default executor: receivers in a pool of threads of the runner's process."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections

from ..core.pool import LifoThreadPool
from .base import STOPPED_REASON, Executor

if TYPE_CHECKING:
    from ..core import Task
    from ..models import MaintenanceTaskExecution
    from ..runner.connections import ConnectionTracker

__all__ = ["QUICK_RECEIVER", "QUICK_THREADS", "STUCK_RECEIVER", "Threads"]

logger = logging.getLogger("django_planton")

#: The most threads of a :class:`Threads` pool without ``max_workers``.
_MOST_THREADS = 100

#: A task's receivers that take less than this (seconds) are quick: a
#: :class:`Threads` pool runs at most :data:`QUICK_THREADS` of them at once.
QUICK_RECEIVER = 0.01
QUICK_THREADS = 4
#: A receiver still running after this (seconds) is stuck: its task's other
#: executions get threads of their own rather than wait for it. Longer than
#: opening a connection, which a new thread's first receiver does.
STUCK_RECEIVER = 0.1
#: How far one receiver's time moves its task's average.
_AVERAGE_WEIGHT = 0.2


class _TaskReceivers:
    """One task's executions waiting for a thread, and its receivers running (a Threads' lock)."""

    __slots__ = ("active", "average", "started", "takers", "waiting")

    def __init__(self) -> None:
        #: Keys of the executions handed over and not started, in order.
        self.waiting: deque[int] = deque()
        #: Threads handed to the pool to take them, not started yet.
        self.takers = 0
        #: Threads taking them now, between two receivers included.
        self.active = 0
        #: When each running receiver started (``time.monotonic()``), by key.
        self.started: dict[int, float] = {}
        #: The receivers' average time in seconds; None until one has ended.
        self.average: float | None = None

    def is_quick(self, now: float) -> bool:
        """Whether the receivers are quick: on average, and none stuck now.

        One running past :data:`STUCK_RECEIVER` says no before the first one
        has ended, and overrules a quick average after.
        """
        if self.average is not None and self.average >= QUICK_RECEIVER:
            return False
        return all(now - started < STUCK_RECEIVER for started in self.started.values())

    def ended(self, key: int, now: float) -> None:
        took = now - self.started.pop(key)
        average = took if self.average is None else self.average
        self.average = average + _AVERAGE_WEIGHT * (took - average)


class Threads(Executor):
    """A pool of threads in the runner's process; each uses database connections of its own.

    ``max_workers`` bounds the receivers that run at once across every task
    that uses this executor; ``None`` gives one thread per execution in
    flight (a task never has more executions running than its concurrency),
    up to 100. Threads are started as needed and kept for the next batch,
    each with its own connection; the thread idle the shortest takes the next
    receiver (:class:`~django_planton.core.pool.LifoThreadPool`). A stopped
    pool starts again on the next ``submit`` (``run_planton --once`` after a
    stop, tests).

    A task's receivers start :data:`QUICK_THREADS` at a time, each thread
    taking the task's next execution when done: for quick receivers (a
    database write, a hand-off to a queue) more threads would spend more on
    passing the GIL to each other, each on a connection of its own, than the
    receivers take. As soon as one has taken :data:`QUICK_RECEIVER` (its
    task's average, or one still running), each execution of the task gets a
    thread of its own.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (isinstance(max_workers, bool) or max_workers < 1):
            raise ValueError(f"max_workers must be at least 1, not {max_workers!r}")
        self.max_workers = max_workers
        mutex = threading.RLock()
        self._lock = threading.Condition(mutex)
        #: Wakes the watcher (on the same lock): only when it waits for work to watch.
        self._watch_wakeup = threading.Condition(mutex)
        self._watcher_idle = False
        self._pool: LifoThreadPool | None = None
        self._pending: dict[int, tuple[Task, MaintenanceTaskExecution, float]] = {}
        self._tasks: dict[str, _TaskReceivers] = {}
        self._running = 0
        self._stopping = False
        #: The connections the pool's threads opened, by alias, so that they can be closed
        #: when idle.
        self._trackers: dict[str, ConnectionTracker] = {}
        self._watcher: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Threads(max_workers={self.max_workers!r})"

    def submit(self, task: Task, executions: Sequence[MaintenanceTaskExecution]) -> None:
        with self._lock:
            if self._pool is None:
                self._stopping = False
                self._pool = LifoThreadPool(
                    max_workers=self.max_workers or _MOST_THREADS,
                    thread_name_prefix="planton-receiver",
                )
            handed_at = time.monotonic()
            receivers = self._tasks.setdefault(task.name, _TaskReceivers())
            for execution in executions:
                self._pending[id(execution)] = (task, execution, handed_at)
                receivers.waiting.append(id(execution))
            self._start_takers(task.name, receivers)

    def wait(self, timeout: float | None = None) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending and not self._running, timeout)

    def stop(self, timeout: float | None = None) -> bool:
        with self._lock:
            self._stopping = True
            stranded = [execution for _, execution, _ in self._pending.values()]
            self._pending.clear()
            for receivers in self._tasks.values():
                receivers.waiting.clear()  # their takers end
            # Takers dropped with the pool's backlog never report back: the
            # next submit starts from nothing.
            self._tasks = {}
            pool, self._pool = self._pool, None
            self._watch_wakeup.notify_all()  # the watcher ends
        if stranded:
            self._terminate(stranded)
        with self._lock:
            finished = self._lock.wait_for(lambda: not self._running, timeout)
        if pool is not None:
            pool.shutdown(wait=finished, timeout=timeout)
        if finished:
            self.close_connections()
        return finished

    def receivers_running(self) -> int:
        with self._lock:
            return self._running

    def close_connections(self) -> None:
        with self._lock:
            if self._running:
                return  # a receiver at work keeps its connection
            trackers = list(self._trackers.values())
        for tracker in trackers:
            tracker.close_all()

    # -- internals (the lock is held where a name says "locked") -------------------------

    def _start_takers(self, task_name: str, receivers: _TaskReceivers) -> None:
        """Hand the pool as many takers of the task's executions as it may run now (locked)."""
        if self._pool is None:
            return
        most = self.max_workers or _MOST_THREADS
        if receivers.is_quick(time.monotonic()):
            most = min(most, QUICK_THREADS)
        free = most - receivers.active
        for _ in range(min(len(receivers.waiting), free) - receivers.takers):
            receivers.takers += 1
            self._pool.submit(partial(self._take, task_name, receivers))
        if len(receivers.waiting) > receivers.takers:
            # Left waiting behind receivers that may turn out slow: look again soon.
            self._watch()

    def _take(self, task_name: str, receivers: _TaskReceivers) -> None:
        """Run the task's executions in this thread, one after another, while any wait."""
        with self._lock:
            receivers.takers -= 1
            receivers.active += 1
        while True:
            with self._lock:
                entry = None
                while receivers.waiting and entry is None:
                    key = receivers.waiting.popleft()
                    entry = self._pending.pop(key, None)
                if entry is None:  # none left, or all ended by stop()
                    receivers.active -= 1
                    return
                self._running += 1
                receivers.started[key] = time.monotonic()
                # Counted as started now: more threads only if the task turned slow.
                self._start_takers(task_name, receivers)
            self._run(*entry, receivers, key)

    def _run(
        self,
        task: Task,
        execution: MaintenanceTaskExecution,
        handed_at: float,
        receivers: _TaskReceivers,
        key: int,
    ) -> None:
        from ..runner.dispatch import run_receivers

        try:
            run_receivers(task, execution, handed_at=handed_at)
        finally:
            self._after_receiver()
            with self._lock:
                self._running -= 1
                receivers.ended(key, time.monotonic())
                self._lock.notify_all()

    def _watch(self) -> None:
        """Start the thread that gives waiting executions more takers once a receiver is slow."""
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(
                target=self._watch_loop, name="planton-receiver-watch", daemon=True
            )
            self._watcher.start()
        elif self._watcher_idle:
            self._watch_wakeup.notify_all()

    def _watch_loop(self) -> None:
        with self._lock:
            while not self._stopping:
                waiting = [
                    (name, receivers)
                    for name, receivers in self._tasks.items()
                    if len(receivers.waiting) > receivers.takers
                ]
                self._watcher_idle = not waiting
                self._watch_wakeup.wait(None if self._watcher_idle else QUICK_RECEIVER)
                for name, receivers in waiting:
                    self._start_takers(name, receivers)

    def _after_receiver(self) -> None:
        """Drop this thread's connections an error left broken; note the others for closing.

        A healthy connection stays open for the thread's next receiver.
        """
        from ..runner.connections import ConnectionTracker, ensure_usable

        for connection in connections.all(initialized_only=True):
            ensure_usable(connection.alias)
            if connection.connection is None:
                continue
            with self._lock:
                tracker = self._trackers.get(connection.alias)
                if tracker is None:
                    tracker = self._trackers[connection.alias] = ConnectionTracker(connection.alias)
            # Every time: close_connections() (after --once) forgets what it closed,
            # and this thread's next receiver opens the connection again.
            tracker.track()

    def _terminate(self, executions: list[MaintenanceTaskExecution]) -> None:
        """End the executions whose receivers never ran, so their slots free at once."""
        from ..models import MaintenanceTaskExecution

        by_alias: dict[str, list[Any]] = {}
        for execution in executions:
            by_alias.setdefault(execution._state.db or "default", []).append(execution.pk)
        for alias, pks in by_alias.items():
            try:
                ended = (
                    MaintenanceTaskExecution.objects.using(alias)
                    .filter(pk__in=pks)
                    .terminate(STOPPED_REASON)
                )
            except DatabaseError as error:
                logger.error(
                    "Could not end %d execution(s) whose receivers never ran: %s; "
                    "they end through their maximum duration.",
                    len(pks),
                    error,
                )
                continue
            if ended:
                logger.info(
                    "Ended %d execution(s) whose receivers had not started: %s.",
                    len(ended),
                    STOPPED_REASON,
                )
