"""The cycle's transaction: one batch of due tasks, one database transaction.

:class:`DatabaseCycleRunner` plugs into the core's loop and keeps each task's
attempt state on its ``maintenance_task`` row, so several runner processes
share one cadence and one concurrency. For each batch of tasks:

1. lock their rows with ``SELECT ... FOR UPDATE SKIP LOCKED``; a row another
   process holds means that process runs this task's cycle, so skip it;
   the same statement reads the database's clock, which every time the
   cycle compares or stores comes from (:mod:`..sql.clock`);
2. leave out the paused tasks and those not due yet; a task whose last
   attempt found every slot taken is due again once one of them has ended;
3. read the due tasks' active instructions, and those their retry policy
   holds back, in one statement;
4. run each schedule inside the same transaction, behind a savepoint of its
   own (:mod:`.sandbox`), so its claims commit or roll back together with the
   execution rows, and a failing task rolls back alone; a batch has a time
   budget, past which a schedule's statement is cancelled (:mod:`.cutter`)
   and the tasks not reached go back, due;
5. write the executions and the new attempt states (:mod:`.writes`), commit;
6. send the signals once the transaction has committed (:mod:`.dispatch`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.utils import timezone

from .. import backoff
from ..conf import planton_settings
from ..core import CycleReport, DelayBounds, Task, WakeUps
from ..errors import PlantonError
from ..models import MaintenanceTask
from ..sql import DatabaseClock, DatabaseNow, InstructionStates, TaskReads, TaskRow
from .connections import ConnectionTracker, drop_if_unusable, ensure_usable
from .cutter import ScheduleCutter
from .sandbox import Attempt, HeldBackReport, attempt_user_code
from .writes import AttemptWriter, full_waiting, sync_tasks

__all__ = ["DatabaseCycleRunner"]

_NO_INSTRUCTIONS = InstructionStates([], [], {})


class DatabaseCycleRunner:
    """Keeps attempt state on ``maintenance_task`` rows; one batch of cycles, one transaction."""

    def __init__(
        self,
        *,
        using: str = DEFAULT_DB_ALIAS,
        hostname: str | None = None,
        poll_interval: float | None = None,
        max_wait: float | None = None,
        max_instruction_length: int | None = None,
        wakeups: WakeUps | None = None,
    ) -> None:
        settings = planton_settings()
        self.using = using
        self.hostname = hostname or settings.hostname
        self.poll_interval = float(poll_interval or settings.poll_interval)
        self.max_wait = float(max_wait or settings.max_wait)
        self.max_instruction_length = int(max_instruction_length or settings.max_instruction_length)
        #: Seconds a batch may spend on schedules before leaving out the rest.
        self.batch_time_budget = settings.batch_time_budget
        self.bounds = DelayBounds(poll_interval=self.poll_interval, max_wait=self.max_wait)
        #: Shared with the loop: who was woken, and the attempt numbers seen.
        self.wakeups = wakeups or WakeUps()
        self.connections = ConnectionTracker(using)
        database = connections[using]
        self._write_lock_first = (
            database.vendor == "sqlite"
            and database.settings_dict.get("OPTIONS", {}).get("transaction_mode") != "IMMEDIATE"
        )
        self._database_failures: dict[str, int] = {}
        self._failures_lock = threading.Lock()
        #: The database's time, read by each cycle's first statement.
        self.clock = DatabaseClock(using)
        self._reads = TaskReads(using)
        self._held_back = HeldBackReport()
        self._writer = AttemptWriter(using=using, hostname=self.hostname, bounds=self.bounds)
        self._cutter = ScheduleCutter(using)

    # -- the CycleRunner protocol -------------------------------------------

    def first(self, task: Task) -> CycleReport:
        # The row decides: a task never attempted is due, one attempted by
        # another process waits for its next_attempt_at.
        return CycleReport(delay=0.0)

    def run(self, task: Task, may_schedule: Callable[[], bool] = lambda: True) -> CycleReport:
        """One attempt of ``task``, in a transaction of its own."""
        [report] = self.run_batch([task], may_schedule)
        return report

    def run_batch(
        self, tasks: Sequence[Task], may_schedule: Callable[[], bool] = lambda: True
    ) -> list[CycleReport]:
        """One attempt of each task, all in one transaction; a report per task, in order.

        The batch shares its round trips (one lock, one read of the active
        instructions, one UPDATE per kind of outcome, one commit) while each
        schedule keeps its own savepoint: a failing task rolls back alone. A
        lost connection fails the batch.
        """
        names = [task.name for task in tasks]
        if len(set(names)) != len(names):
            raise PlantonError(f"A batch names a task more than once: {names!r}")
        woken, forced = self.wakeups.take(names)
        self.connections.track()
        ensure_usable(self.using)
        try:
            # Calendar delays (backoff.cron) count from the database's time too.
            with backoff.using_clock(self._aware_now):
                reports = self._in_transaction(tasks, names, may_schedule, woken, forced)
        except DatabaseError as error:
            return [self._database_failed(task, error) for task in tasks]
        with self._failures_lock:
            for name in names:
                self._database_failures.pop(name, None)
        return [reports[name] for name in names]

    def wake(self, task_name: str, *, force: bool = False) -> bool:
        """Record a wake-up of ``task_name`` for its next cycle (see :meth:`WakeUps.wake`)."""
        return self.wakeups.wake(task_name, force=force)

    def close_connections(self) -> None:
        """Close the connections the worker threads opened; call once the loop stopped."""
        self.connections.close_all()

    def stop_threads(self) -> None:
        """End the thread that cuts slow schedules; call once the loop stopped."""
        self._cutter.stop()

    # -- internals -----------------------------------------------------------

    def _aware_now(self) -> datetime:
        now = self.clock.now()
        return now if timezone.is_aware(now) else timezone.make_aware(now)

    def _in_transaction(
        self,
        tasks: Sequence[Task],
        names: list[str],
        may_schedule: Callable[[], bool],
        woken: set[str],
        forced: set[str],
    ) -> dict[str, CycleReport]:
        reports: dict[str, CycleReport] = {}
        with transaction.atomic(using=self.using):
            if self._write_lock_first:
                # SQLite has no row locks. Writing first takes the database's
                # write lock before anything is read, so two runners on one
                # file run a task's cycle one after the other.
                MaintenanceTask.objects.using(self.using).filter(nid__in=names).update(
                    updated_at=DatabaseNow()
                )
            rows, now = self._reads.lock_tasks(names)
            if len(rows) < len(tasks):
                reports.update(self._not_locked([task for task in tasks if task.name not in rows]))
            if now is None:  # no row locked: nothing to attempt
                return reports
            self.clock.observe(now)
            due: list[tuple[Task, TaskRow]] = []
            full: list[tuple[Task, TaskRow, CycleReport]] = []
            for task in tasks:
                row = rows.get(task.name)
                if row is None:
                    continue
                self.wakeups.saw_row(row.pk, row.nid, row.attempt_number)
                waiting = self._waiting(
                    task, row, now, woken=task.name in woken, forced=task.name in forced
                )
                if waiting is None:
                    due.append((task, row))
                elif row.saturated_active_count is not None and not row.is_paused:
                    full.append((task, row, waiting))
                else:
                    reports[task.name] = waiting
            states: dict[int, InstructionStates] = {}
            if due or full:
                ids = [row.pk for _, row in due] + [row.pk for _, row, _ in full]
                self.wakeups.states_read(
                    [task.name for task, _ in due] + [task.name for task, _, _ in full]
                )
                states = self._reads.instruction_states(ids)
                due += self._slots_freed(full, states, reports)
            if due:
                # Rows locked beside a schedule's own (a batch's, due or not)
                # wait for it: then it runs under the batch's time budget.
                guarded = len(rows) > 1
                reports.update(self._attempt(due, states, may_schedule, guarded=guarded))
            self._saw_running(due, full, states, reports)
        return reports

    def _saw_running(
        self,
        due: list[tuple[Task, TaskRow]],
        full: list[tuple[Task, TaskRow, CycleReport]],
        states: dict[int, InstructionStates],
        reports: dict[str, CycleReport],
    ) -> None:
        """Tell the wake-ups which instructions this cycle's read saw running, or dispatched.

        An ending of any other one that wakes the task meanwhile was seen by
        the read (see :meth:`WakeUps.take_deferred`).
        """
        for task, row in [*due, *((task, row) for task, row, _ in full)]:
            active = states[row.pk].active if row.pk in states else ()
            report = reports.get(task.name)
            dispatched = report.instructions if report is not None else ()
            self.wakeups.saw_running(task.name, [*active, *dispatched] if dispatched else active)

    def _slots_freed(
        self,
        full: list[tuple[Task, TaskRow, CycleReport]],
        states: dict[int, InstructionStates],
        reports: dict[str, CycleReport],
    ) -> list[tuple[Task, TaskRow]]:
        """The tasks whose last attempt found every slot taken and of which one has ended since.

        Ending an execution writes nothing to the task's row, so a completion
        costs no extra statement; the cycle compares the running count with
        the task's concurrency. Those still full look again in a poll
        interval, which is when an ending in another process is seen without
        a notification.
        """
        freed: list[tuple[Task, TaskRow]] = []
        for task, row, waiting in full:
            running = len(states[row.pk].active) if row.pk in states else 0
            # Fewer running than the concurrency: an execution ended, or an
            # operator raised the override.
            if running < (row.maximum_concurrent_execution_count or task.concurrency):
                freed.append((task, row))
            else:
                reports[task.name] = CycleReport(
                    delay=min(waiting.delay, self.poll_interval), waiting=full_waiting(running)
                )
        return freed

    def _attempt(
        self,
        due: list[tuple[Task, TaskRow]],
        states: dict[int, InstructionStates],
        may_schedule: Callable[[], bool],
        *,
        guarded: bool,
    ) -> dict[str, CycleReport]:
        connection = connections[self.using]
        attempts: list[Attempt] = []
        reports: dict[str, CycleReport] = {}
        started = time.monotonic()
        # One guard for the batch: its schedules run one after another, against one deadline.
        guard = (
            self._cutter.guard(connection, due[0][0].name, started + self.batch_time_budget)
            if guarded
            else contextlib.nullcontext(None)
        )
        with guard as cut:
            for tried, (task, row) in enumerate(due):
                spent = time.monotonic() - started
                if tried and spent > self.batch_time_budget:
                    # Not attempted: the row is left as it was (due), and is free
                    # for any runner once this transaction ends.
                    reports[task.name] = CycleReport(
                        delay=0.0, waiting=f"left out of a batch that ran {spent:.1f}s"
                    )
                    continue
                cut_before = cut is not None and cut.done
                if cut is not None:
                    cut.task_name = task.name  # whose statement a cancel would end
                attempt = attempt_user_code(
                    task,
                    row,
                    states.get(row.pk, _NO_INSTRUCTIONS),
                    may_schedule=may_schedule,
                    connection=connection,
                    max_instruction_length=self.max_instruction_length,
                )
                took = time.monotonic() - started - spent
                self.wakeups.schedule_took(task.name, slow=took > self.batch_time_budget)
                if cut is not None and cut.done and not cut_before and attempt.outcome is None:
                    # Cut by the budget, not failed: its savepoint rolled back, and
                    # its row is left due for an attempt of its own.
                    reports[task.name] = CycleReport(
                        delay=0.0, waiting=f"cut from its batch after {took:.1f}s: attempted alone"
                    )
                    continue
                attempts.append(attempt)
        # Stamped after the schedules ran: an execution starts when it is written.
        written = self._writer.write(attempts, self.clock.now())
        for name, (report, attempt_number) in written.items():
            self.wakeups.attempted(name, attempt_number)
            reports[name] = report
        self._held_back.report(attempts)
        return reports

    def _not_locked(self, tasks: list[Task]) -> dict[str, CycleReport]:
        """Rows another process holds (it runs their cycle now), or rows deleted in the admin."""
        existing = set(
            MaintenanceTask.objects.using(self.using)
            .filter(nid__in=[task.name for task in tasks])
            .values_list("nid", flat=True)
        )
        gone = [task for task in tasks if task.name not in existing]
        if gone:
            sync_tasks(gone, using=self.using)  # bring them back, due at once
        return {
            task.name: CycleReport(delay=self.poll_interval, waiting="attempted by another runner")
            if task.name in existing
            else CycleReport(delay=0.0, waiting="its row was deleted; created again")
            for task in tasks
        }

    def _waiting(
        self, task: Task, row: TaskRow, now: datetime, *, woken: bool, forced: bool
    ) -> CycleReport | None:
        """How long a paused or not yet due task waits; None when it is due."""
        if row.is_paused:
            paused = self.bounds.next_attempt(task, row.attempt_number, paused=True)
            return CycleReport(delay=paused.wait, waiting="paused")
        if (
            forced
            or row.next_attempt_at is None
            or row.next_attempt_at <= now
            or (woken and row.attempt_number == 0)
        ):
            return None
        return CycleReport(
            delay=self.bounds.capped((row.next_attempt_at - now).total_seconds()),
            waiting=f"not due until {row.next_attempt_at.isoformat(sep=' ', timespec='seconds')}",
        )

    def _database_failed(self, task: Task, error: DatabaseError) -> CycleReport:
        """A lost connection: drop it, and look again later, backing off up to max_wait."""
        drop_if_unusable(self.using)
        with self._failures_lock:
            failures = self._database_failures.get(task.name, 0) + 1
            self._database_failures[task.name] = failures
        return CycleReport(delay=self.bounds.after_database_failures(failures), errors=(error,))
