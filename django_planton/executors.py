"""Where a task's ``task_dispatched`` receivers run, once its cycle has committed.

The receivers are the same whatever the executor, and get the same
arguments (``sender``, ``task_name``, ``instruction``, ``execution``); one
that raises fails its execution; receivers end their executions themselves.
``batch_dispatched`` always goes out in the runner's process, in the cycle's
thread, before the batch is handed to the executor.

- :class:`Inline`: in the cycle's thread, one after another (a receiver that
  hands the work on at once, or a test that wants it synchronous);
- :class:`Threads` (the default): a pool of threads in the ``run_planton``
  process, so that a task of concurrency 10 really works on 10 items at once,
  and the cycle's thread is free to refill a slot as soon as one frees.

Choose per task (``register(task, executor=...)``, ``@task(..., executor=...)``)
or for every task with the setting ``PLANTON_EXECUTOR``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections

if TYPE_CHECKING:
    from .core import Task
    from .models import MaintenanceTaskExecution
    from .runner.connections import ConnectionTracker

__all__ = [
    "STOPPED_REASON",
    "Executor",
    "Inline",
    "Threads",
    "default_executor",
    "executor_for",
    "fail_unsent",
]

logger = logging.getLogger("django_planton")

#: The reason given to executions whose receivers had not started when the runner stopped.
STOPPED_REASON = "the runner stopped before its receivers ran"

#: The most threads of a :class:`Threads` pool without ``max_workers``.
_MOST_THREADS = 100


class Executor:
    """Runs the ``task_dispatched`` receivers of executions handed to it after a cycle commits.

    :meth:`submit` must return quickly: it runs in the cycle's thread.
    :meth:`wait` and :meth:`stop` are for the runner: the first for
    ``run_planton --once``, the second for a graceful shutdown.
    """

    def submit(self, task: Task, executions: Sequence[MaintenanceTaskExecution]) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every execution handed over so far has had its receivers run."""
        return True

    def stop(self, timeout: float | None = None) -> bool:
        """Let running receivers finish (within ``timeout``); end those not started.

        Returns True when every receiver that was running finished in time.
        """
        return True

    def close_connections(self) -> None:
        """Close the database connections of receivers that are done (none are running)."""

    def receivers_running(self) -> int:
        """How many receivers are at work in this process now (a shutdown waits for them)."""
        return 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Inline(Executor):
    """In the cycle's thread, one execution after another (the behaviour before executors)."""

    def submit(self, task: Task, executions: Sequence[MaintenanceTaskExecution]) -> None:
        from .runner.dispatch import run_receivers

        handed_at = time.monotonic()
        for execution in executions:
            run_receivers(task, execution, handed_at=handed_at)


class Threads(Executor):
    """A pool of threads in the runner's process; each uses database connections of its own.

    ``max_workers`` bounds the receivers that run at once across every task
    that uses this executor; ``None`` gives one thread per execution in
    flight (a task never has more executions running than its concurrency),
    up to 100. Threads are started as needed and kept for the next batch,
    each with its own connection. A stopped pool starts again on the next
    ``submit`` (``run_planton --once`` after a stop, tests).
    """

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (isinstance(max_workers, bool) or max_workers < 1):
            raise ValueError(f"max_workers must be at least 1, not {max_workers!r}")
        self.max_workers = max_workers
        self._lock = threading.Condition()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, tuple[Task, MaintenanceTaskExecution, float]] = {}
        self._running = 0
        self._stopping = False
        #: The connections the pool's threads opened, by alias, so that they can be closed
        #: when idle.
        self._trackers: dict[str, ConnectionTracker] = {}

    def __repr__(self) -> str:
        return f"Threads(max_workers={self.max_workers!r})"

    def submit(self, task: Task, executions: Sequence[MaintenanceTaskExecution]) -> None:
        with self._lock:
            if self._pool is None:
                self._stopping = False
                self._pool = ThreadPoolExecutor(
                    max_workers=self.max_workers or _MOST_THREADS,
                    thread_name_prefix="planton-receiver",
                )
            handed_at = time.monotonic()
            for execution in executions:
                self._pending[id(execution)] = (task, execution, handed_at)
                self._pool.submit(self._run, id(execution))

    def wait(self, timeout: float | None = None) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending and not self._running, timeout)

    def stop(self, timeout: float | None = None) -> bool:
        with self._lock:
            self._stopping = True
            stranded = [execution for _, execution, _ in self._pending.values()]
            self._pending.clear()
            pool, self._pool = self._pool, None
        if stranded:
            self._terminate(stranded)
        with self._lock:
            finished = self._lock.wait_for(lambda: not self._running, timeout)
        if pool is not None:
            pool.shutdown(wait=finished, cancel_futures=True)
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

    def _run(self, key: int) -> None:
        from .runner.dispatch import run_receivers

        with self._lock:
            entry = self._pending.pop(key, None)
            if entry is None:  # ended by stop() before it started
                return
            self._running += 1
        task, execution, handed_at = entry
        try:
            run_receivers(task, execution, handed_at=handed_at)
        finally:
            self._after_receiver()
            with self._lock:
                self._running -= 1
                self._lock.notify_all()

    def _after_receiver(self) -> None:
        """Drop this thread's connections an error left broken; note the others for closing.

        A healthy connection stays open for the thread's next receiver.
        """
        from .runner.connections import ConnectionTracker, ensure_usable

        for connection in connections.all(initialized_only=True):
            ensure_usable(connection.alias)
            if connection.connection is None:
                continue
            with self._lock:
                tracker = self._trackers.get(connection.alias)
                if tracker is None:
                    tracker = self._trackers[connection.alias] = ConnectionTracker(connection.alias)
            tracker.track()

    def _terminate(self, executions: list[MaintenanceTaskExecution]) -> None:
        """End the executions whose receivers never ran, so their slots free at once."""
        from .models import MaintenanceTaskExecution

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


_defaults: dict[object, Executor] = {}
_defaults_lock = threading.Lock()


def default_executor() -> Executor:
    """The executor of tasks that name none: the setting ``PLANTON_EXECUTOR``.

    An :class:`Executor` instance, or the dotted path of a class that takes
    no arguments; :class:`Threads` by default. One instance per value, so
    that the tasks share one pool.
    """
    from django.utils.module_loading import import_string

    from .conf import raw_setting
    from .errors import PlantonError

    value = raw_setting("PLANTON_EXECUTOR")
    if isinstance(value, Executor):
        return value
    key = value if isinstance(value, str) else repr(value)
    with _defaults_lock:
        if key not in _defaults:
            if value is None:
                _defaults[key] = Threads()
            elif isinstance(value, str):
                made = import_string(value)()
                if not isinstance(made, Executor):
                    raise PlantonError(f"PLANTON_EXECUTOR {value!r} is not an Executor class.")
                _defaults[key] = made
            else:
                raise PlantonError(
                    f"PLANTON_EXECUTOR must be an Executor or a dotted path, not {value!r}."
                )
        return _defaults[key]


def executor_for(task: Task) -> Executor:
    """The executor of a task: the one it was registered with, else the default."""
    from .registry import registry

    chosen = registry.executor_of(task.name)
    return chosen if isinstance(chosen, Executor) else default_executor()


def fail_unsent(
    task: Task, execution: MaintenanceTaskExecution, error: BaseException, *, where: str
) -> None:
    """An execution a bridge could not hand over (its queue is down): fail it with the error.

    The rest of the batch still goes; the failure is the retry policy's to
    hold back. Should the database be down too, the execution ends through
    its maximum duration.
    """
    logger.error(
        "Task %s: handing execution %s to %s failed: %s",
        task.name,
        execution.pk,
        where,
        error,
        extra={"task_name": task.name, "instruction": execution.instruction},
    )
    try:
        execution.fail(error)
    except DatabaseError as database_error:
        logger.error(
            "Task %s: could not fail execution %s: %s; it ends through its maximum duration.",
            task.name,
            execution.pk,
            database_error,
        )
