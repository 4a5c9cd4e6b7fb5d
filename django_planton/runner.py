"""The Django adapter of the scheduling core.

:class:`DatabaseCycleRunner` plugs into the core's loop (:class:`Planton`)
and runs each cycle in one database transaction around the task's
``maintenance_task`` row:

1. lock the row with ``SELECT ... FOR UPDATE SKIP LOCKED``; a row another
   process holds means that process is running this task's cycle, so skip;
2. stop there if the task is paused or not due yet;
3. read the active instructions and the effective concurrency;
4. call ``schedule`` inside the same transaction, so its own claims commit or
   roll back together with the execution rows;
5. on an error or an invalid result roll the user's code back to its
   savepoint and record the failed attempt on the still-locked row, so a
   failing task backs off and no other runner retries it meanwhile;
6. write the execution rows and the new attempt state, and commit;
7. send the signals once the transaction has committed.

Quiet tasks that fall due together go through these steps as one batch
(:meth:`DatabaseCycleRunner.run_batch`): one statement locks all their rows,
one reads their active instructions, one INSERT writes their executions and
one UPDATE per kind of outcome their attempts, while each schedule keeps a
savepoint of its own (:mod:`django_planton.savepoint`), taken only if it
sends a statement.

Because the attempt state lives on the row, every runner process reads the
same clock: several processes share one cadence and one concurrency.

:class:`Runner` wires the registry, the core loop, housekeeping (ending
overdue executions, pruning old ones) and wake-ups together; the
``run_planton`` command only parses options and calls it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from . import signals
from .conf import get_setting
from .core import (
    AttemptHook,
    CycleOutcome,
    CycleReport,
    Planton,
    Task,
    compute_delay,
    log_error,
    run_cycle,
)
from .errors import PlantonError, UnexpectedTaskInstructionsError
from .models import (
    ExecutionState,
    MaintenanceTask,
    MaintenanceTaskExecution,
    insert_executions,
    postgres_array,
    update_row,
    update_rows,
)
from .notify import EndedListener, listening_supported
from .registry import registry
from .savepoint import LazySavepoint

logger = logging.getLogger("django_planton")

__all__ = ["DatabaseCycleRunner", "Runner", "sync_tasks"]

# Seconds between two prunes of old executions by a running runner.
_PRUNE_INTERVAL = 60.0


def sync_tasks(tasks: Sequence[Task], *, using: str = DEFAULT_DB_ALIAS) -> dict[int, str]:
    """Create or update a ``maintenance_task`` row for every task; return their names by id.

    Run at start-up, so that the admin lists tasks before they ever run and
    shows the concurrency declared in code.
    """
    if not tasks:
        return {}
    rows = MaintenanceTask.objects.using(using)
    # MySQL and MariaDB upsert on any unique key and refuse to be told which.
    with_target = connections[using].features.supports_update_conflicts_with_target
    rows.bulk_create(
        [MaintenanceTask(nid=task.name, concurrency=task.concurrency) for task in tasks],
        update_conflicts=True,
        unique_fields=["nid"] if with_target else None,
        update_fields=["concurrency"],
    )
    names = [task.name for task in tasks]
    return dict(rows.filter(nid__in=names).values_list("pk", "nid"))


# The furthest ahead a next attempt is stored: a back-off may ask for more
# seconds than a datetime can add.
_FURTHEST = timedelta(days=365 * 100)


def _later(now: datetime, seconds: float) -> datetime:
    try:
        return now + min(timedelta(seconds=seconds), _FURTHEST)
    except OverflowError:
        return now + _FURTHEST


def _ensure_usable(alias: str) -> None:
    """Drop this thread's connection if an error left it broken.

    Unlike ``close_old_connections()``, this keeps a healthy connection open
    whatever ``CONN_MAX_AGE`` says: a runner thread reconnecting every cycle
    would spend more on connecting than on scheduling.
    """
    connection = connections[alias]
    if connection.connection is None or connection.in_atomic_block:
        return
    if connection.errors_occurred or connection.get_autocommit() is not True:
        if connection.is_usable() and connection.get_autocommit():
            connection.errors_occurred = False
        else:
            connection.close()


#: What a cycle reads of a task's row, and what a receiver may read through
#: ``execution.maintenance_task`` without another query. The timestamps are
#: left out: converting them was most of what locking a batch of rows cost.
_ROW_FIELDS = (
    "id",
    "nid",
    "maximum_execution_duration",
    "maximum_concurrent_execution_count",
    "concurrency",
    "is_paused",
    "attempt_number",
    "next_attempt_at",
    "last_error",
)


class _TaskRow(NamedTuple):
    """A locked ``maintenance_task`` row, as a cycle needs it (in ``_ROW_FIELDS`` order)."""

    pk: int
    nid: str
    maximum_execution_duration: timedelta
    maximum_concurrent_execution_count: int
    concurrency: int
    is_paused: bool
    attempt_number: int
    next_attempt_at: datetime | None
    last_error: str

    def instance(self, using: str) -> MaintenanceTask:
        """The row as a model instance (other fields load on access), for the executions."""
        return MaintenanceTask.from_db(using, list(_ROW_FIELDS), self)


class _Statements:
    """The runner's own reads, compiled once (per batch size) and run with new parameters.

    An idle batch is little more than these; building and compiling them as
    querysets every time cost several times what the database spends on
    them. The SQL is the ORM's own and values are always parameters. On
    PostgreSQL a batch's names or ids go as one array parameter
    (``= ANY(%s::text[])``), so one statement serves every batch size and
    psycopg parses it once.
    """

    def __init__(self, using: str) -> None:
        self.using = using
        self._as_array = connections[using].vendor == "postgresql"
        self._compiled: dict[tuple[str, int], tuple[str, Any, Any]] = {}

    def lock_tasks(self, names: Sequence[str]) -> dict[str, _TaskRow]:
        """The tasks' rows, locked, by name; a row another transaction holds is left out."""
        rows = self._run(
            "lock",
            lambda lookup, value: (
                MaintenanceTask.objects.using(self.using)
                .select_for_update(skip_locked=True)
                .filter(**{f"nid{lookup}": value})
                .order_by()
                .values_list(*_ROW_FIELDS)
            ),
            "nid",
            names,
        )
        return {row[1]: _TaskRow(*row) for row in rows}

    def active_instructions(self, task_ids: Sequence[int]) -> dict[int, list[str]]:
        """The instructions still running, by task id."""
        rows = self._run(
            "active",
            lambda lookup, value: (
                MaintenanceTaskExecution.objects.using(self.using)
                .running()
                .filter(**{f"maintenance_task_id{lookup}": value})
                .order_by()
                .values_list("maintenance_task_id", "instruction")
            ),
            "maintenance_task_id",
            task_ids,
        )
        active: dict[int, list[str]] = {}
        for task_id, instruction in rows:
            active.setdefault(task_id, []).append(instruction)
        return active

    def _run(
        self,
        kind: str,
        build: Callable[[str, Any], Any],
        column: str,
        values: Sequence[Any],
    ) -> list[Any]:
        key = (kind, 0 if self._as_array else len(values))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(build, column, values)
        sql, compiler, converters = compiled
        params = [postgres_array(values)] if self._as_array else list(values)
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if converters:
            rows = list(compiler.apply_converters(rows, converters))
        return rows

    def _compile(
        self, build: Callable[[str, Any], Any], column: str, values: Sequence[Any]
    ) -> tuple[str, Any, Any]:
        """Compile ``build(lookup, value)``; ``column`` is what the lookup filters on."""
        if self._as_array:
            # Compiled as "column = %s" for one value, then made "column = ANY(%s)".
            queryset = build("", values[0])
            expected = [values[0]]
        else:
            queryset = build("__in", values)
            expected = list(values)
        compiler = queryset.query.get_compiler(using=self.using)
        sql, params = compiler.as_sql()
        if list(params) != list(expected):  # the SQL must take exactly our parameters
            raise RuntimeError(f"Unexpected parameters {params!r} in {sql!r}")
        if self._as_array:
            quote = compiler.connection.ops.quote_name
            meta = queryset.model._meta
            comparison = f"{quote(meta.db_table)}.{quote(meta.get_field(column).column)} = %s"
            if sql.count(comparison) != 1:
                raise RuntimeError(f"Expected one {comparison!r} in {sql!r}")
            array_type = "bigint[]" if isinstance(values[0], int) else "text[]"
            sql = sql.replace(comparison, comparison.replace("= %s", f"= ANY(%s::{array_type})"))
        selected = [expression for expression, _, _ in compiler.select]
        return sql, compiler, compiler.get_converters(selected)


@dataclass(slots=True)
class _Attempt:
    """A due task's attempt within a batch; written once every task of the batch ran."""

    task: Task
    row: _TaskRow
    outcome: CycleOutcome | None = None
    errors: tuple[BaseException, ...] = ()


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
    ) -> None:
        self.using = using
        self.hostname = hostname or get_setting("PLANTON_HOSTNAME")
        self.poll_interval = float(poll_interval or get_setting("PLANTON_POLL_INTERVAL"))
        self.max_wait = float(max_wait or get_setting("PLANTON_MAX_WAIT"))
        self.max_instruction_length = int(
            max_instruction_length or get_setting("PLANTON_MAX_INSTRUCTION_LENGTH")
        )
        database = connections[using]
        self._write_lock_first = (
            database.vendor == "sqlite"
            and database.settings_dict.get("OPTIONS", {}).get("transaction_mode") != "IMMEDIATE"
        )
        self._lock = threading.Lock()
        #: Names of the tasks by row id, learnt from each row a cycle reads,
        #: so that a row re-created under a new id still gets its wake-ups.
        self.task_names_by_id: dict[int, str] = {}
        self._attempt_numbers: dict[str, int] = {}
        self._woken: set[str] = set()
        self._forced: set[str] = set()
        self._database_failures: dict[str, int] = {}
        self._connections: set[Any] = set()
        self._statements = _Statements(using)

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
        schedule keeps its own savepoint, taken only if it sends a statement:
        a failing task rolls back alone. A lost connection fails the batch.
        """
        names = [task.name for task in tasks]
        if len(set(names)) != len(names):
            raise PlantonError(f"A batch names a task more than once: {names!r}")
        with self._lock:
            woken = self._woken.intersection(names)
            self._woken.difference_update(woken)
            forced = self._forced.intersection(names)
            self._forced.difference_update(forced)
        self._track_connection()
        _ensure_usable(self.using)
        try:
            reports = self._run_batch(tasks, names, may_schedule, woken, forced)
        except DatabaseError as error:
            return [self._database_failed(task, error) for task in tasks]
        for name in names:
            self._database_failures.pop(name, None)
        return reports

    # -- wake-ups ------------------------------------------------------------

    def wake(self, task_name: str, *, force: bool = False) -> bool:
        """Let the next cycle of ``task_name`` run before its next attempt time.

        Only when the task's last attempt (as this process saw it) found work
        or found every slot taken, attempt number 0: an idle task keeps
        backing off, and its wake-ups cost nothing. ``force`` (new rows in a
        table watched by ``wake_on_change``) wakes it whatever its back-off.
        Returns whether to wake.
        """
        with self._lock:
            if force:
                self._forced.add(task_name)
                return True
            if self._attempt_numbers.get(task_name, 0) > 0:
                return False  # backing off: a freed slot is no news to it
            self._woken.add(task_name)
            return True

    # -- internals -----------------------------------------------------------

    def _run_batch(
        self,
        tasks: Sequence[Task],
        names: list[str],
        may_schedule: Callable[[], bool],
        woken: set[str],
        forced: set[str],
    ) -> list[CycleReport]:
        now = timezone.now()
        reports: dict[str, CycleReport] = {}
        with transaction.atomic(using=self.using):
            if self._write_lock_first:
                # SQLite has no row locks. Writing first takes the database's
                # write lock before anything is read, so two runners on one
                # file run a task's cycle one after the other.
                MaintenanceTask.objects.using(self.using).filter(nid__in=names).update(
                    updated_at=now
                )
            rows = self._statements.lock_tasks(names)
            if len(rows) < len(tasks):
                reports.update(self._not_locked([task for task in tasks if task.name not in rows]))
            due: list[tuple[Task, _TaskRow]] = []
            for task in tasks:
                row = rows.get(task.name)
                if row is None:
                    continue
                self.task_names_by_id[row.pk] = row.nid
                self._attempt_numbers[task.name] = row.attempt_number
                waiting = self._waiting(
                    task, row, now, woken=task.name in woken, forced=task.name in forced
                )
                if waiting is None:
                    due.append((task, row))
                else:
                    reports[task.name] = waiting
            if due:
                active = self._statements.active_instructions([row.pk for _, row in due])
                connection = connections[self.using]
                attempts = [
                    self._attempt(task, row, active.get(row.pk, []), may_schedule, connection)
                    for task, row in due
                ]
                reports.update(self._write(attempts))
        return [reports[name] for name in names]

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
            task.name: CycleReport(delay=self.poll_interval if task.name in existing else 0.0)
            for task in tasks
        }

    def _waiting(
        self, task: Task, row: _TaskRow, now: datetime, *, woken: bool, forced: bool
    ) -> CycleReport | None:
        """How long a paused or not yet due task waits; None when it is due."""
        if row.is_paused:
            delay, _ = compute_delay(task, row.attempt_number)
            return CycleReport(delay=self._capped(max(delay, self.poll_interval)))
        if (
            forced
            or row.next_attempt_at is None
            or row.next_attempt_at <= now
            or (woken and row.attempt_number == 0)
        ):
            return None
        return CycleReport(delay=self._capped((row.next_attempt_at - now).total_seconds()))

    def _attempt(
        self,
        task: Task,
        row: _TaskRow,
        active: list[str],
        may_schedule: Callable[[], bool],
        connection: BaseDatabaseWrapper,
    ) -> _Attempt:
        """Run the user's code of one due task behind its own (lazy) savepoint.

        On any error (a raising schedule or calculate_limit, an invalid
        batch) its claims roll back while the task's row stays locked, so the
        failed attempt is recorded before another runner can see the task as
        due. A failed attempt counts as an empty one: the task backs off
        instead of retrying at once.
        """
        concurrency = row.maximum_concurrent_execution_count or task.concurrency
        if len(active) >= concurrency:  # no user code to run
            return _Attempt(
                task, row, CycleOutcome(attempt_number=row.attempt_number, saturated=True)
            )
        savepoint = LazySavepoint(connection)
        with savepoint:
            outcome = run_cycle(
                task,
                attempt_number=row.attempt_number,
                active_task_instructions=active,
                concurrency=concurrency,
                may_schedule=may_schedule,
            )
        errors = outcome.errors
        if not errors and outcome.instructions:
            problem = self._unstorable(task, outcome.instructions)
            if problem is not None:
                errors = (problem,)
        if not errors and savepoint.taken and self._transaction_broken():
            errors = (
                PlantonError(
                    f"The schedule of task {task.name!r} caught a database error and "
                    "returned; the error broke its transaction, so its claims are rolled back."
                ),
            )
        if errors:
            savepoint.rollback()
            return _Attempt(task, row, errors=errors)
        savepoint.release()
        return _Attempt(task, row, outcome)

    def _transaction_broken(self) -> bool:
        """Whether a schedule swallowed a database error that broke the transaction.

        PostgreSQL refuses every statement after an error until a rollback;
        Django marks the transaction after an error inside an ``atomic``
        block without a savepoint. Either way the schedule must count as
        failed (and its savepoint be rolled back), not look like a lost
        connection.
        """
        connection = connections[self.using]
        if connection.needs_rollback:
            return True
        if connection.vendor != "postgresql" or connection.connection is None:
            return False
        status = getattr(getattr(connection.connection, "info", None), "transaction_status", None)
        return status is not None and status.name == "INERROR"

    def _write(self, attempts: list[_Attempt]) -> dict[str, CycleReport]:
        """Write the batch: executions in one INSERT, attempt states grouped by outcome.

        Signals go out on commit. Tasks whose new state is alike (same
        change of attempt number, same delay) share one UPDATE, so a batch of
        idle tasks with the same back-off costs one statement.
        """
        now = timezone.now()
        reports: dict[str, CycleReport] = {}
        dispatches: list[tuple[Task, list[MaintenanceTaskExecution]]] = []
        groups: dict[tuple[bool, int, float, bool], list[int]] = {}
        for attempt in attempts:
            task, row, outcome = attempt.task, attempt.row, attempt.outcome
            if outcome is None:
                reports[task.name] = self._record_failure(task, row, attempt.errors, now)
                continue
            delay, delay_error = compute_delay(task, outcome.attempt_number)
            if outcome.saturated:
                # Every slot is taken: a freed slot wakes the task, so there
                # is no point looking sooner than the poll interval (a delay
                # of 0 after work would otherwise spin until an execution ends).
                delay = max(delay, self.poll_interval)
            if outcome.instructions:
                dispatches.append((task, self._executions(row, outcome.instructions, now)))
            reset = outcome.attempt_number == 0
            added = 0 if reset else outcome.attempt_number - row.attempt_number
            groups.setdefault((reset, added, delay, bool(outcome.instructions)), []).append(row.pk)
            self._attempt_numbers[task.name] = outcome.attempt_number
            reports[task.name] = CycleReport(
                delay=self._capped(delay),
                instructions=outcome.instructions,
                errors=(delay_error,) if delay_error is not None else (),
            )
        if dispatches:
            insert_executions(
                [execution for _, executions in dispatches for execution in executions],
                using=self.using,
            )
            for task, executions in dispatches:
                transaction.on_commit(partial(self._dispatch, task, executions), using=self.using)
        for (reset, added, delay, dispatched), pks in groups.items():
            state = {
                "next_attempt_at": _later(now, delay),
                "last_attempted_at": now,
                "last_error": "",
                "updated_at": now,
            }
            if reset:
                state["attempt_number"] = 0
            if dispatched:
                state["last_dispatched_at"] = now
            increment = {"attempt_number": added} if added else None
            update_rows(MaintenanceTask, pks, state, using=self.using, add=increment)
        return reports

    def _executions(
        self, row: _TaskRow, instructions: Sequence[str], now: datetime
    ) -> list[MaintenanceTaskExecution]:
        task_row = row.instance(self.using)
        return [
            MaintenanceTaskExecution(
                maintenance_task=task_row,
                instruction=instruction,
                started_at=now,
                hostname=self.hostname,
                state=ExecutionState.RUNNING,
                created_at=now,
            )
            for instruction in instructions
        ]

    def _record_failure(
        self, task: Task, row: _TaskRow, errors: tuple[BaseException, ...], now: datetime
    ) -> CycleReport:
        """Record a failed attempt on the locked row; ``schedule_failed`` goes out on commit."""
        attempt_number = row.attempt_number + 1
        delay, delay_error = compute_delay(task, attempt_number)
        message = "; ".join(f"{type(error).__name__}: {error}" for error in errors)
        state = {
            "attempt_number": attempt_number,
            "next_attempt_at": _later(now, delay),
            "last_attempted_at": now,
            "last_error": message[:2000],
            "updated_at": now,
        }
        update_row(MaintenanceTask, row.pk, state, using=self.using)
        self._attempt_numbers[task.name] = attempt_number
        transaction.on_commit(partial(self._send_schedule_failed, task, errors), using=self.using)
        if delay_error is not None:
            errors = (*errors, delay_error)
        return CycleReport(delay=self._capped(delay), errors=errors)

    def _send_schedule_failed(self, task: Task, errors: tuple[BaseException, ...]) -> None:
        for error in errors:
            signals.send_and_log(
                signals.schedule_failed, sender=task, task_name=task.name, error=error
            )

    def _unstorable(self, task: Task, instructions: Sequence[str]) -> BaseException | None:
        """Instructions the executions table cannot hold are the task's error, not a crash."""
        for instruction in instructions:
            if len(instruction) > self.max_instruction_length:
                reason = (
                    f"an instruction of {len(instruction)} characters exceeds "
                    f"PLANTON_MAX_INSTRUCTION_LENGTH ({self.max_instruction_length})."
                )
            elif "\x00" in instruction:
                reason = f"{instruction!r} contains a NUL character, which databases reject."
            else:
                continue
            return UnexpectedTaskInstructionsError(
                f"Task {task.name!r} returned unexpected instructions: {reason}",
                task_name=task.name,
                unexpected_task_instructions=list(instructions),
            )
        return None

    def _dispatch(self, task: Task, executions: list[MaintenanceTaskExecution]) -> None:
        """Send the signals of a committed batch; a failing receiver fails its execution."""
        signals.send_and_log(
            signals.batch_dispatched, sender=task, task_name=task.name, executions=executions
        )
        for execution in executions:
            for error in signals.send_and_log(
                signals.task_dispatched,
                sender=task,
                task_name=task.name,
                instruction=execution.instruction,
                execution=execution,
            ):
                try:
                    execution.fail(error)
                except DatabaseError as database_error:
                    # Left running, it ends through its maximum duration;
                    # the rest of the batch still goes to its receivers.
                    log_error(task.name, database_error)

    def _database_failed(self, task: Task, error: DatabaseError) -> CycleReport:
        """A lost connection: drop it, and look again later, backing off up to max_wait."""
        connection = connections[self.using]
        if not connection.in_atomic_block:
            try:
                if connection.connection is not None and not connection.is_usable():
                    connection.close()
            except DatabaseError:
                connection.connection = None
        failures = self._database_failures.get(task.name, 0) + 1
        self._database_failures[task.name] = failures
        delay = min(self.poll_interval * 2 ** min(failures - 1, 10), self.max_wait)
        return CycleReport(delay=delay, errors=(error,))

    def _capped(self, delay: float) -> float:
        return max(0.0, min(delay, self.max_wait))

    def _track_connection(self) -> None:
        connection = connections[self.using]
        if connection not in self._connections:
            connection.inc_thread_sharing()  # so that close_connections() may close it
            with self._lock:
                self._connections.add(connection)

    def close_connections(self) -> None:
        """Close the connections the worker threads opened; call once the loop stopped."""
        with self._lock:
            tracked, self._connections = self._connections, set()
        for connection in tracked:
            with contextlib.suppress(DatabaseError):
                connection.close()


class Runner:
    """Runs registered tasks in this process: the loop, wake-ups and housekeeping.

    ``run_planton`` is a thin wrapper; tests drive this class directly.
    """

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
        self.tasks = list(registry.select() if tasks is None else tasks)
        self.using = using
        self.cycle_runner = DatabaseCycleRunner(using=using, hostname=hostname)
        workers = max_workers or get_setting("PLANTON_MAX_WORKERS")
        self.planton = Planton(
            self.tasks,
            cycle_runner=self.cycle_runner,
            max_workers=max(1, min(workers, len(self.tasks) or 1)),
            batch_size=batch_size or get_setting("PLANTON_BATCH_SIZE"),
            around_attempt=around_attempt,
        )
        self.housekeeping_interval = float(
            housekeeping_interval or get_setting("PLANTON_HOUSEKEEPING_INTERVAL")
        )
        self._names = {task.name for task in self.tasks}
        self._stopping = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self.listener: EndedListener | None = None
        self._last_prune = float("-inf")

    def run_once(self) -> list[CycleReport]:
        """One cycle of each task that is due, then housekeeping; for cron and tests."""
        self.cycle_runner.task_names_by_id.update(sync_tasks(self.tasks, using=self.using))
        reports = []
        for task in self.tasks:
            report = self.cycle_runner.run(task)
            for error in report.errors:
                log_error(task.name, error)
            reports.append(report)
        self.housekeep()
        return reports

    def start(self) -> None:
        """Start scheduling in background threads and return.

        Connections: one per worker thread, one for housekeeping and, on
        PostgreSQL, one that listens for ended executions. The calling
        thread's connection is closed once the tasks are synced.
        """
        self.cycle_runner.task_names_by_id.update(sync_tasks(self.tasks, using=self.using))
        if not connections[self.using].in_atomic_block:
            connections[self.using].close()
        if listening_supported(self.using):
            # The trigger's NOTIFY reaches this process too: listening to the
            # in-process signal as well would wake each task twice.
            self.listener = EndedListener(
                using=self.using,
                on_task_ids=self._wake_ids,
                on_task_names=self._wake_now,
                stopping=self._stopping,
            )
            self.listener.start()
        else:
            signals.executions_ended.connect(self._on_executions_ended, weak=False)
        self.planton.start()
        self._housekeeper = threading.Thread(
            target=self._housekeeping_loop, name="planton-housekeeping", daemon=True
        )
        self._housekeeper.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop scheduling; cycles in flight finish (within ``timeout``)."""
        signals.executions_ended.disconnect(self._on_executions_ended)
        self._stopping.set()
        finished = self.planton.stop(timeout=timeout)
        for thread in (self._housekeeper, self.listener):
            if thread is not None:
                thread.join(timeout=timeout)
        if finished:
            self.cycle_runner.close_connections()
        return finished

    def wake(self, task_name: str) -> None:
        if task_name in self._names and self.cycle_runner.wake(task_name):
            self.planton.wake(task_name)

    def housekeep(self, *, prune: bool = True) -> None:
        """End executions past their maximum duration; prune old completed ones."""
        overdue = MaintenanceTaskExecution.objects.using(self.using).overdue()
        for execution in overdue.terminate("maximum execution duration exceeded"):
            logger.warning(
                "Terminated execution %s of task %s (instruction %s): ran longer than %s",
                execution.pk,
                execution.maintenance_task.nid,
                execution.instruction,
                execution.maintenance_task.maximum_execution_duration,
                extra={
                    "task_name": execution.maintenance_task.nid,
                    "instruction": execution.instruction,
                },
            )
        if prune:
            self.prune()

    def prune(self) -> int:
        """Delete completed executions older than PLANTON_KEEP_COMPLETED_EXECUTIONS."""
        keep = get_setting("PLANTON_KEEP_COMPLETED_EXECUTIONS")
        if keep is None:
            return 0
        cutoff = timezone.now() - keep
        old = MaintenanceTaskExecution.objects.using(self.using).finished()
        deleted, _ = old.filter(ended_at__lt=cutoff).delete()
        return deleted

    def _housekeeping_loop(self) -> None:
        try:
            while not self._stopping.wait(self.housekeeping_interval):
                _ensure_usable(self.using)
                prune_due = time.monotonic() - self._last_prune >= _PRUNE_INTERVAL
                try:
                    self.housekeep(prune=prune_due)
                    if prune_due:
                        self._last_prune = time.monotonic()
                except DatabaseError as error:
                    logger.error("Housekeeping failed: %s", error, exc_info=error)
        finally:
            connections[self.using].close()

    def _on_executions_ended(self, sender: Any, task_ids: set[int], **kwargs: Any) -> None:
        self._wake_ids(task_ids)

    def _wake_now(self, task_names: set[str]) -> None:
        """A trigger of ``wake_on_change``: attempt these tasks now, back-off or not."""
        for name in task_names & self._names:
            self.cycle_runner.wake(name, force=True)
            self.planton.wake(name)

    def _wake_ids(self, task_ids: set[int]) -> None:
        for task_id in task_ids:
            name = self.cycle_runner.task_names_by_id.get(task_id)
            if name is not None:
                self.wake(name)
