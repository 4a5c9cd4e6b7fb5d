"""One runner process: the registry's tasks, the loop, its side threads and wake-ups.

``run_planton`` only parses options and calls :class:`Runner`; tests drive
this class directly. The threads of a process, all started in :meth:`start`:

- the core loop's timer and its worker pool (``planton-timer``,
  ``planton-worker-N``): the cycles;
- ``planton-housekeeping``: overdue executions, dead runners' executions and
  pruning (:mod:`.housekeeping`);
- ``planton-heartbeat``: this runner's row in ``planton_runner`` (:mod:`.heartbeat`);
- ``planton-listener``, on PostgreSQL: wake-ups from other processes (:mod:`..notify`);
- ``planton-watchdog``: warns about cycles that run too long (:mod:`..core.watchdog`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from .. import signals
from ..conf import planton_settings
from ..core import AttemptHook, CycleReport, InFlight, Planton, Task, WakeUps, log_error
from ..executors import Executor, executor_for
from ..notify import EndedListener, listening_supported
from ..registry import registry
from .cycle import DatabaseCycleRunner
from .heartbeat import Heartbeat
from .housekeeping import Housekeeper
from .timeouts import ConnectionLimits
from .writes import sync_tasks

__all__ = ["Runner"]


class Runner:
    """Runs registered tasks in this process: the loop, wake-ups and housekeeping."""

    def __init__(
        self,
        tasks: Sequence[Task] | None = None,
        *,
        using: str = DEFAULT_DB_ALIAS,
        max_workers: int | None = None,
        hostname: str | None = None,
        housekeeping_interval: float | None = None,
        batch_size: int | None = None,
        around_attempt: AttemptHook | None = None,
    ) -> None:
        settings = planton_settings()
        self.tasks = list(registry.select() if tasks is None else tasks)
        self.using = using
        self.wakeups = WakeUps()
        self.cycle_runner = DatabaseCycleRunner(
            using=using, hostname=hostname, wakeups=self.wakeups
        )
        workers = max_workers or settings.max_workers
        self.planton = Planton(
            self.tasks,
            cycle_runner=self.cycle_runner,
            max_workers=max(1, min(workers, len(self.tasks) or 1)),
            batch_size=batch_size or settings.batch_size,
            around_attempt=around_attempt,
            wakeups=self.wakeups,
            slow_cycle_warning=settings.slow_cycle_warning,
        )
        self._stopping = threading.Event()
        self.housekeeper = Housekeeper(
            using=using,
            interval=float(housekeeping_interval or settings.housekeeping_interval),
            stopping=self._stopping,
        )
        self.heartbeat = Heartbeat(
            using=using,
            hostname=self.cycle_runner.hostname,
            tasks=self.tasks,
            interval=settings.heartbeat_interval,
        )
        self.housekeeper.heartbeat = self.heartbeat
        self.listener: EndedListener | None = None
        #: The row ids of this runner's tasks while it runs (``signals.wake_here``).
        self._task_ids: set[int] = set()
        #: The connect and statement timeouts, installed while the runner runs.
        self.connection_limits = ConnectionLimits(
            using,
            connect_timeout=settings.connect_timeout,
            statement_timeout=settings.statement_timeout,
        )

    @property
    def housekeeping_interval(self) -> float:
        return self.housekeeper.interval

    def run_once(self) -> list[CycleReport]:
        """One cycle of each task that is due, then housekeeping; for cron and tests.

        The connection limits of :mod:`.timeouts` hold for the call. No row in
        ``planton_runner``: the call returns once the receivers have run, so
        there is nothing in flight for a heartbeat to vouch for.
        """
        with self.connection_limits.applied():
            self.wakeups.learn_ids(sync_tasks(self.tasks, using=self.using))
            reports = []
            for task in self.tasks:
                report = self.cycle_runner.run(task)
                for error in report.errors:
                    log_error(task.name, error)
                reports.append(report)
            self.housekeep()
            for executor in self.executors():
                executor.wait()  # --once returns when the receivers have run
                executor.close_connections()
        return reports

    def start(self) -> None:
        """Start scheduling in background threads and return.

        Connections: one per worker thread, one for housekeeping, one for the
        heartbeat and, on PostgreSQL, one that listens for ended executions.
        The calling thread's connection is closed once the tasks are synced
        and this runner's row is inserted. Each has the connect and statement
        timeouts of :mod:`.timeouts`.
        """
        self.connection_limits.install()
        names_by_id = sync_tasks(self.tasks, using=self.using)
        self._task_ids = set(names_by_id)
        self.wakeups.learn_ids(names_by_id)
        self.heartbeat.start()
        if not connections[self.using].in_atomic_block:
            connections[self.using].close()
        # In-process wake-ups always: they are dropped only while the listener
        # proves that NOTIFY reaches it (a pooler in transaction mode loses LISTEN),
        # and for endings of this runner's tasks here, which notify no one else.
        signals.executions_ended.connect(self._on_executions_ended, weak=False)
        signals.wake_here(self._task_ids)
        listen_on = planton_settings().listen_database or self.using
        if listening_supported(listen_on):
            self.listener = EndedListener(
                using=listen_on,
                on_task_ids=self._wake_ids,
                on_task_names=self._wake_now,
                stopping=self._stopping,
            )
            self.listener.start()
        self.planton.start()
        self.housekeeper.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop scheduling; cycles in flight finish (within ``timeout``)."""
        signals.wake_here(self._task_ids, add=False)
        self._task_ids = set()
        signals.executions_ended.disconnect(self._on_executions_ended)
        self._stopping.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        finished = self.planton.stop(timeout=timeout)
        # Receivers already running finish; those not started are ended as terminated.
        for executor in self.executors():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            finished = executor.stop(timeout=left) and finished
        for thread in (self.housekeeper.thread, self.listener):
            if thread is not None:
                thread.join(timeout=timeout)
        # Receivers still running keep the row: it turns dead, and other runners end them.
        self.heartbeat.stop(remove=finished, timeout=timeout)
        if finished:
            self.cycle_runner.close_connections()
        self.cycle_runner.stop_threads()
        self.connection_limits.uninstall()
        return finished

    def executors(self) -> list[Executor]:
        """The executors of this runner's tasks, each once."""
        unique: dict[int, Executor] = {}
        for task in self.tasks:
            executor = executor_for(task)
            unique.setdefault(id(executor), executor)
        return list(unique.values())

    def cycles_in_flight(self) -> list[InFlight]:
        """The cycles running now, the oldest first: after a ``stop()`` that timed out,
        those it gave up on."""
        return self.planton.cycles_in_flight()

    def wake(self, task_name: str, *, force: bool = False) -> None:
        """Attempt a task of this runner now, if the wake-up is worth it.

        The loop ignores names it does not schedule, and asks :class:`WakeUps`
        whether the wake-up is worth an attempt.
        """
        self.planton.wake(task_name, force=force)

    def housekeep(self, *, prune: bool = True) -> None:
        """End executions past their maximum duration; prune old completed ones."""
        self.housekeeper.housekeep(prune=prune)

    def prune(self) -> int:
        """Delete completed executions older than PLANTON_KEEP_COMPLETED_EXECUTIONS."""
        return self.housekeeper.prune()

    def _on_executions_ended(
        self,
        sender: Any,
        task_ids: set[int],
        notified: bool = True,
        instructions: Mapping[int, Collection[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        if notified and self.listener is not None and self.listener.hears.is_set():
            return  # the trigger's NOTIFY reaches this process too: one wake-up is enough
        self._wake_ids(task_ids, instructions)

    def _wake_now(self, task_names: set[str]) -> None:
        """A trigger of ``wake_on_change``: attempt these tasks now, back-off or not."""
        for name in task_names:
            self.wake(name, force=True)

    def _wake_ids(
        self, task_ids: set[int], ended: Mapping[int, Collection[str]] | None = None
    ) -> None:
        """Wake these tasks; ``ended``: the instructions that ended, by task id, when known."""
        for task_id in task_ids:
            for name in self.wakeups.names_for_ids([task_id]):
                self.planton.wake(name, ended=None if ended is None else ended.get(task_id))
