"""The scheduling core: plain Python, no Django.

A :class:`Planton` owns a set of :class:`Task` objects and, for each one,
repeats a *cycle*: wait ``calculate_delay(attempt_number)`` seconds, read the
instructions still active, derive a ``limit`` from the task's concurrency, ask
the task's ``schedule`` function for at most that many new instructions,
validate them, and dispatch them.

The cycle itself lives in :func:`run_cycle`, a pure function, and the question
"when was this task last attempted, and what happened?" lives behind the
:class:`CycleRunner` seam. The default :class:`MemoryCycleRunner` keeps that
state in this process's memory; the Django layer plugs in a runner that keeps
it on a database row and wraps each cycle in a transaction, and reuses this
same loop for everything else.

The loop is one timer thread with a heap of due times plus a bounded pool of
worker threads, so a process can carry hundreds of mostly idle tasks without a
thread per task, and a slow ``schedule`` of one task does not hold up another
(as long as there are free workers).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import (
    DuplicateTaskNameError,
    InvalidTaskConfigurationError,
    PlantonError,
    UnexpectedStateError,
    UnexpectedTaskInstructionsError,
)

__all__ = [
    "DEFAULT_DELAY",
    "BatchCycleRunner",
    "CycleReport",
    "CycleRunner",
    "ErrorEvent",
    "MemoryCycleRunner",
    "Planton",
    "ScheduleContext",
    "Task",
    "TaskEvent",
    "compute_delay",
    "compute_limit",
    "log_error",
    "run_cycle",
    "validate_instructions",
]

logger = logging.getLogger("django_planton")

#: Seconds between attempts when a task has no ``calculate_delay``, or when
#: its ``calculate_delay`` fails.
DEFAULT_DELAY = 1.0

# Tasks that found nothing last time may be attempted this much later than
# due (at most a tenth of their delay), so that the loop can attempt those due
# close together in one batch; never earlier than due.
BATCH_SLACK = 0.02

# The most tasks in one batch: a batch runs its schedules one after another in
# one worker thread, so a batch must stay short next to the delays it serves.
BATCH_SIZE = 200

# The longest single wait of the timer thread: ``Condition.wait`` refuses
# timeouts above ``threading.TIMEOUT_MAX``, and a long delay is simply waited
# out in slices.
_MAX_WAIT_SLICE = 3600.0


@dataclass(frozen=True, slots=True)
class ScheduleContext:
    """What a ``schedule`` function gets to decide which instructions to return."""

    task_name: str
    #: Instructions dispatched earlier and still running, as strings. A
    #: schedule must not return any of them again.
    active_task_instructions: tuple[str, ...]
    #: The task's effective concurrency for this cycle.
    concurrency: int
    #: The most instructions this cycle may return.
    limit: int
    #: Attempts since the last one that produced instructions.
    attempt_number: int = 0


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One dispatched instruction."""

    task_name: str
    instruction: str


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An error met while scheduling a task; ``error`` is the original exception."""

    task_name: str
    error: BaseException


#: Called with the task names of each attempt (one task, or a batch); the
#: context manager it returns is entered around the attempt, in the worker
#: thread that runs it. A documented hook for profilers and benchmarks.
AttemptHook = Callable[[Sequence[str]], contextlib.AbstractContextManager[object]]

ScheduleFunction = Callable[[ScheduleContext], Sequence[str | int]]
DelayFunction = Callable[[int], float]
LimitFunction = Callable[[int, Sequence[str]], int]


@dataclass(frozen=True, slots=True, eq=False)
class Task:
    """A named unit of recurring work.

    ``schedule`` claims work and returns instructions (short strings or
    integers, such as row ids). ``calculate_delay(attempt_number)`` gives the
    seconds to wait before the next attempt, where ``attempt_number`` counts
    the attempts since the last one that produced instructions; the
    :mod:`django_planton.backoff` helpers build common ones.
    ``calculate_limit(concurrency, active)`` caps a batch; by default it is
    the number of free slots.

    Tasks compare by identity: the Django layer uses a task as a signal
    sender, and two tasks that happen to share options are still two tasks.
    """

    name: str
    schedule: ScheduleFunction
    concurrency: int = 1
    calculate_delay: DelayFunction | None = None
    calculate_limit: LimitFunction | None = None

    def __post_init__(self) -> None:
        validate_task(self)


def validate_task(task: Task) -> None:
    """Raise if ``task`` can never be scheduled; shared by ``Task`` and ``Planton``."""
    if not isinstance(task.name, str) or not task.name.strip():
        raise InvalidTaskConfigurationError(
            "Task name must be a non-empty string.", task_name=task.name or None
        )
    if (
        isinstance(task.concurrency, bool)
        or not isinstance(task.concurrency, int)
        or task.concurrency < 1
    ):
        raise InvalidTaskConfigurationError(
            "Task concurrency must be greater than 0.", task_name=task.name
        )
    for attribute in ("schedule",):
        if not callable(getattr(task, attribute)):
            raise InvalidTaskConfigurationError(
                f"Task {attribute} must be callable.", task_name=task.name
            )
    for attribute in ("calculate_delay", "calculate_limit"):
        value = getattr(task, attribute)
        if value is not None and not callable(value):
            raise InvalidTaskConfigurationError(
                f"Task {attribute} must be callable or None.", task_name=task.name
            )


def compute_delay(task: Task, attempt_number: int) -> tuple[float, BaseException | None]:
    """Seconds before the next attempt, and the error met computing them, if any.

    A failing or nonsensical ``calculate_delay`` must not kill the loop, so
    it falls back to :data:`DEFAULT_DELAY` and hands the error back for
    reporting.
    """
    if task.calculate_delay is None:
        return DEFAULT_DELAY, None
    try:
        value = task.calculate_delay(attempt_number)
    except Exception as error:
        return DEFAULT_DELAY, error
    try:
        usable = (
            not isinstance(value, bool)
            and isinstance(value, int | float)
            and math.isfinite(value)
            and value >= 0
        )
    except OverflowError:  # an int too large for a float
        usable = False
    if not usable:
        return DEFAULT_DELAY, UnexpectedStateError(
            f"calculate_delay of task {task.name!r} returned {value!r}; "
            "expected a finite number of seconds, 0 or more."
        )
    return float(value), None


def compute_limit(task: Task, concurrency: int, active: Sequence[str]) -> int:
    """The most instructions this cycle may return; raises on a limit the loop cannot use."""
    if task.calculate_limit is None:  # by default, the free slots
        limit = concurrency - len(active)
    else:
        limit = task.calculate_limit(concurrency, active)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise UnexpectedStateError(
            f"Limit of task {task.name!r} must be an integer of at least 0; got {limit!r}."
        )
    return limit


def _normalise(member: Any) -> str:
    if isinstance(member, str):
        return str.__str__(member)
    return int.__repr__(member)


def validate_instructions(
    task_name: str, result: Any, *, limit: int, active: Iterable[str]
) -> tuple[str, ...]:
    """Check a batch against the instruction rules and return it as strings.

    The whole batch is rejected on the first broken rule: dispatching part
    of a batch the schedule got wrong would hide the bug.
    """

    def reject(reason: str) -> UnexpectedTaskInstructionsError:
        return UnexpectedTaskInstructionsError(
            f"Task {task_name!r} returned unexpected instructions: {reason}",
            task_name=task_name,
            unexpected_task_instructions=result,
        )

    if not isinstance(result, list | tuple):
        raise reject(f"expected a list or tuple, got {type(result).__name__}.")
    if not result:  # most attempts of a quiet task
        return ()
    if len(result) > limit:
        raise reject(f"{len(result)} instructions exceed the limit of {limit}.")
    active_set = set(active)
    seen: set[str] = set()
    instructions: list[str] = []
    for member in result:
        if isinstance(member, bool) or not isinstance(member, str | int):
            raise reject(f"{member!r} is neither a str nor an int.")
        instruction = _normalise(member)
        if instruction in seen:
            raise reject(f"{instruction!r} appears more than once.")
        if instruction in active_set:
            raise reject(f"{instruction!r} is already active.")
        seen.add(instruction)
        instructions.append(instruction)
    return tuple(instructions)


def _normalise_active(task_name: str, active: Any) -> tuple[str, ...]:
    if type(active) is list and not active:  # most attempts of a quiet task
        return ()
    if isinstance(active, str | bytes) or not isinstance(active, Iterable):
        raise UnexpectedStateError(
            f"Active instructions of task {task_name!r} must be a sequence; got {active!r}."
        )
    return tuple(str(instruction) for instruction in active)


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleOutcome:
    """What one cycle produced: instructions to dispatch and errors to report."""

    #: Validated instructions, as strings, in the order ``schedule`` returned them.
    instructions: tuple[str, ...] = ()
    errors: tuple[BaseException, ...] = ()
    #: The attempt number after this cycle: 0 after instructions, one more
    #: after an attempt that found none, unchanged when ``schedule`` was not called.
    attempt_number: int
    #: Whether ``schedule`` was called at all.
    scheduled: bool = False
    #: The limit handed to ``schedule`` (``None`` when it was not computed).
    limit: int | None = None
    #: Whether the cycle found every slot taken (or a limit of 0).
    saturated: bool = False

    @property
    def failed(self) -> bool:
        """True when ``schedule`` raised or returned an invalid batch."""
        return self.scheduled and bool(self.errors)


def run_cycle(
    task: Task,
    *,
    attempt_number: int,
    active_task_instructions: Any,
    concurrency: int | None = None,
    may_schedule: Callable[[], bool] = lambda: True,
) -> CycleOutcome:
    """Run steps 2 to 6 of one attempt, given the active instructions.

    Never raises for errors of user code: they come back in
    ``CycleOutcome.errors`` so that an adapter can decide what to roll back.
    ``concurrency`` overrides the task's own (an operator's override);
    ``may_schedule`` is asked right before ``schedule`` is called, so that a
    stopping loop starts no new schedule.
    """
    concurrency = task.concurrency if concurrency is None else concurrency
    unchanged = CycleOutcome(attempt_number=attempt_number, saturated=True)
    try:
        active = _normalise_active(task.name, active_task_instructions)
    except UnexpectedStateError as error:
        return CycleOutcome(attempt_number=attempt_number, errors=(error,))
    if len(active) >= concurrency:
        return unchanged
    try:
        limit = compute_limit(task, concurrency, active)
    except Exception as error:
        return CycleOutcome(attempt_number=attempt_number, errors=(error,))
    if limit == 0 or not may_schedule():
        return unchanged
    context = ScheduleContext(
        task_name=task.name,
        active_task_instructions=active,
        concurrency=concurrency,
        limit=limit,
        attempt_number=attempt_number,
    )
    try:
        result = task.schedule(context)
        instructions = validate_instructions(task.name, result, limit=limit, active=active)
    except Exception as error:
        return CycleOutcome(
            attempt_number=attempt_number + 1, errors=(error,), scheduled=True, limit=limit
        )
    return CycleOutcome(
        instructions=instructions,
        attempt_number=0 if instructions else attempt_number + 1,
        scheduled=True,
        limit=limit,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleReport:
    """What a :class:`CycleRunner` tells the loop after an attempt (or before the first)."""

    delay: float
    instructions: tuple[str, ...] = ()
    errors: tuple[BaseException, ...] = ()


class CycleRunner(Protocol):
    """The seam between the loop and where attempt state lives.

    ``first`` is asked once per task when the loop starts and says how long
    to wait before the first attempt; ``run`` performs one attempt and says
    how long to wait before the next. Both must not raise for errors of user
    code: they report them in ``CycleReport.errors``.
    """

    def first(self, task: Task) -> CycleReport: ...

    def run(self, task: Task, may_schedule: Callable[[], bool]) -> CycleReport: ...


@runtime_checkable
class BatchCycleRunner(CycleRunner, Protocol):
    """A :class:`CycleRunner` that can also attempt several tasks at once.

    The loop hands it the tasks that found nothing last time and are due
    together, so that a runner keeping state in a database pays one
    transaction for all of them instead of one each: waiting tasks then cost
    next to nothing. ``run_batch`` returns one report per task, in order.
    """

    def run_batch(
        self, tasks: Sequence[Task], may_schedule: Callable[[], bool]
    ) -> list[CycleReport]: ...


class MemoryCycleRunner:
    """Keeps each task's attempt number in this process's memory.

    This is the reference library's behaviour: fine for one process. Two
    processes each keep their own clock; the Django layer's database runner
    shares one instead.
    """

    def __init__(self, get_active_task_instructions: Callable[[str], Sequence[str]]) -> None:
        self._get_active = get_active_task_instructions
        self._attempt_numbers: dict[str, int] = {}

    def first(self, task: Task) -> CycleReport:
        self._attempt_numbers[task.name] = 0
        delay, error = compute_delay(task, 0)
        return CycleReport(delay=delay, errors=(error,) if error else ())

    def run(self, task: Task, may_schedule: Callable[[], bool]) -> CycleReport:
        attempt_number = self._attempt_numbers.get(task.name, 0)
        try:
            active = self._get_active(task.name)
        except Exception as error:
            delay, delay_error = compute_delay(task, attempt_number)
            return CycleReport(delay=delay, errors=_errors(error, delay_error))
        outcome = run_cycle(
            task,
            attempt_number=attempt_number,
            active_task_instructions=active,
            may_schedule=may_schedule,
        )
        self._attempt_numbers[task.name] = outcome.attempt_number
        delay, delay_error = compute_delay(task, outcome.attempt_number)
        return CycleReport(
            delay=delay,
            instructions=outcome.instructions,
            errors=_errors(*outcome.errors, delay_error),
        )


def _no_hook(names: Sequence[str]) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext()


def _errors(*errors: BaseException | None) -> tuple[BaseException, ...]:
    return tuple(error for error in errors if error is not None)


@dataclass(slots=True, eq=False)
class _Due:
    #: When the timer hands the task to a worker.
    at: float
    task_name: str
    #: When the task is due; earlier than ``at`` by the batching slack.
    due_at: float


class Planton:
    """Schedules a set of tasks in the background.

    ``on_task`` is called with a :class:`TaskEvent` for every dispatched
    instruction, ``on_error`` with an :class:`ErrorEvent` for every error
    met; neither may stop the loop. ``cycle_runner`` replaces the in-memory
    attempt state (the Django layer passes its database runner; then
    ``get_active_task_instructions`` is not needed). ``max_workers`` bounds
    the threads that run cycles; by default one per task, up to 32.

    With a :class:`BatchCycleRunner`, tasks whose last attempt dispatched
    nothing and that fall due within :data:`BATCH_SLACK` of each other are
    attempted together, up to ``batch_size`` (:data:`BATCH_SIZE`) per batch,
    never before they are due. A task that dispatched work has its own
    attempts, so a busy task never waits behind a batch.

    ``around_attempt`` (an :data:`AttemptHook`) wraps every attempt in the
    worker thread that runs it: a documented place for profilers and
    benchmarks to measure cycles without touching the loop's internals.
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        get_active_task_instructions: Callable[[str], Sequence[str]] | None = None,
        on_task: Callable[[TaskEvent], object] | None = None,
        on_error: Callable[[ErrorEvent], object] | None = None,
        *,
        cycle_runner: CycleRunner | None = None,
        max_workers: int | None = None,
        batch_size: int | None = None,
        around_attempt: AttemptHook | None = None,
    ) -> None:
        self._tasks: dict[str, Task] = {}
        for task in tasks:
            if not isinstance(task, Task):
                raise PlantonError(f"Expected a Task, got {task!r}.")
            validate_task(task)
            if task.name in self._tasks:
                raise DuplicateTaskNameError(task.name)
            self._tasks[task.name] = task
        if cycle_runner is None:
            if get_active_task_instructions is None:
                raise PlantonError(
                    "Planton needs get_active_task_instructions (or a cycle_runner)."
                )
            cycle_runner = MemoryCycleRunner(get_active_task_instructions)
        if max_workers is not None and max_workers < 1:
            raise PlantonError("max_workers must be at least 1.")
        if batch_size is not None and batch_size < 1:
            raise PlantonError("batch_size must be at least 1.")
        self._runner = cycle_runner
        self._around_attempt = around_attempt
        self._on_task = on_task
        self._on_error = on_error
        self._max_workers = max_workers or max(1, min(32, len(self._tasks)))
        self._batch_size = batch_size or BATCH_SIZE
        self._batching = isinstance(cycle_runner, BatchCycleRunner) and self._batch_size > 1
        #: Tasks whose last attempt dispatched nothing: they may share a batch.
        self._quiet: set[str] = set(self._tasks)

        self._condition = threading.Condition()
        self._state = "new"  # new -> running -> stopped
        # (at, sequence, due): tuples compare in C, and the sequence breaks ties.
        self._heap: list[tuple[float, int, _Due]] = []
        self._sequence = itertools.count()
        self._pending: dict[str, _Due] = {}  # tasks waiting in the heap
        self._in_flight: set[str] = set()  # tasks whose cycle runs now
        self._wake_after_cycle: set[str] = set()
        self._busy_threads: set[int] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._timer: threading.Thread | None = None

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(self._tasks.values())

    @property
    def is_running(self) -> bool:
        return self._state == "running"

    @property
    def max_workers(self) -> int:
        """The most cycles (single tasks or batches) that run at once."""
        return self._max_workers

    def start(self) -> None:
        """Start scheduling in the background and return at once."""
        with self._condition:
            if self._state != "new":
                raise PlantonError(f"Planton cannot start: it is already {self._state}.")
            self._state = "running"
        self._pool = ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix="planton-worker"
        )
        for task in self._tasks.values():
            report = self._guarded_first(task)
            self._report(task, report)
            self._schedule_next([(task.name, report.delay)])
        self._timer = threading.Thread(target=self._timer_loop, name="planton-timer", daemon=True)
        self._timer.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Cancel pending waits at once and wait for cycles in flight.

        Returns True when every cycle in flight finished within ``timeout``.
        Safe to call more than once, and before ``start`` (then it does
        nothing). No ``schedule`` call starts after this returns.
        """
        me = threading.get_ident()
        with self._condition:
            if self._state == "new":
                return True
            self._state = "stopped"
            self._heap.clear()
            self._pending.clear()
            self._condition.notify_all()
            finished = self._condition.wait_for(
                lambda: not (self._busy_threads - {me}), timeout=timeout
            )
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        timer = self._timer
        if timer is not None and timer is not threading.current_thread():
            timer.join(timeout=1.0)
        return finished

    def wake(self, task_name: str) -> None:
        """Attempt a task now instead of at its next due time.

        Used when a slot frees up (an execution ended) so that waiting work
        does not wait out the delay. A task whose cycle runs now is attempted
        again right after it. Unknown names are ignored: a wake-up is a hint.
        """
        with self._condition:
            if self._state != "running" or task_name not in self._tasks:
                return
            # A freed slot likely means work: attempted alone, not in a batch.
            self._quiet.discard(task_name)
            if task_name in self._in_flight:
                self._wake_after_cycle.add(task_name)
                return
            now = time.monotonic()
            self._push(task_name, now, now)

    # -- internals ---------------------------------------------------------

    def _push(self, task_name: str, at: float, due_at: float, *, notify: bool = True) -> None:
        """Put a task in the heap, handed out at ``at``; caller holds the condition."""
        current = self._pending.get(task_name)
        if current is not None and current.at <= at:
            return
        due = _Due(at, task_name, due_at)
        self._pending[task_name] = due
        heapq.heappush(self._heap, (at, next(self._sequence), due))
        if notify:
            self._condition.notify_all()

    def _schedule_next(self, delays: Iterable[tuple[str, float]]) -> None:
        """Put tasks back in the heap after their attempt, each ``delay`` seconds from now."""
        with self._condition:
            if self._state != "running":
                return
            now = time.monotonic()
            for task_name, delay in delays:
                if task_name in self._wake_after_cycle:
                    self._wake_after_cycle.discard(task_name)
                    self._quiet.discard(task_name)  # woken: attempted alone
                    delay = 0.0
                slack = 0.0
                if self._batching and task_name in self._quiet:
                    slack = min(BATCH_SLACK, delay / 10)
                self._push(task_name, now + delay + slack, now + delay, notify=False)
            self._condition.notify_all()

    def _timer_loop(self) -> None:
        with self._condition:
            while self._state == "running":
                if not self._heap:
                    self._condition.wait()
                    continue
                due = self._heap[0][2]
                if self._pending.get(due.task_name) is not due:
                    heapq.heappop(self._heap)  # superseded by an earlier wake-up
                    continue
                now = time.monotonic()
                remaining = due.at - now
                if remaining > 0:
                    self._condition.wait(min(remaining, _MAX_WAIT_SLICE))
                    continue
                heapq.heappop(self._heap)
                del self._pending[due.task_name]
                assert self._pool is not None
                if self._batching and due.task_name in self._quiet:
                    self._submit_batches([due.task_name, *self._take_quiet_due(now)])
                else:
                    self._in_flight.add(due.task_name)
                    self._pool.submit(self._attempt, [self._tasks[due.task_name]], batch=False)

    def _submit_batches(self, names: list[str]) -> None:
        assert self._pool is not None
        self._in_flight.update(names)
        size = self._batch_size
        for start in range(0, len(names), size):
            batch = [self._tasks[name] for name in names[start : start + size]]
            self._pool.submit(self._attempt, batch, batch=True)

    def _take_quiet_due(self, now: float) -> list[str]:
        """Take every other quiet task that is due by ``now`` out of the heap.

        Their heap entries stay behind and are dropped when they surface,
        as superseded entries are.
        """
        taken = [
            name for name, due in self._pending.items() if due.due_at <= now and name in self._quiet
        ]
        for name in taken:
            del self._pending[name]
        return taken

    def _may_schedule(self) -> bool:
        # Asked before every schedule call, batches included, so it takes no
        # lock: ``stop()`` changes the state before it waits for the busy
        # workers, and a schedule that started before that is waited for.
        return self._state == "running"

    def _attempt(self, tasks: list[Task], *, batch: bool) -> None:
        me = threading.get_ident()
        names = [task.name for task in tasks]
        with self._condition:
            if self._state != "running":
                self._in_flight.difference_update(names)
                return
            self._busy_threads.add(me)
        delays: dict[str, float] = dict.fromkeys(names, DEFAULT_DELAY)
        try:
            hook = self._around_attempt or _no_hook
            with hook(names):
                reports = self._reports(tasks, batch=batch)
            for task, report in zip(tasks, reports, strict=True):
                delays[task.name] = report.delay
                if report.instructions:
                    self._quiet.discard(task.name)
                else:
                    self._quiet.add(task.name)
                self._report(task, report)
        except Exception as error:  # a runner bug must not end the tasks' loops
            for name in names:
                self._emit_error(name, error)
        finally:
            with self._condition:
                self._in_flight.difference_update(names)
                self._busy_threads.discard(me)
                self._condition.notify_all()
            self._schedule_next(delays.items())

    def _reports(self, tasks: list[Task], *, batch: bool) -> list[CycleReport]:
        if not batch:
            return [self._runner.run(tasks[0], self._may_schedule)]
        reports = self._runner.run_batch(tasks, self._may_schedule)  # type: ignore[attr-defined]
        if len(reports) != len(tasks):
            raise UnexpectedStateError(
                f"run_batch returned {len(reports)} reports for {len(tasks)} tasks."
            )
        return list(reports)

    def _guarded_first(self, task: Task) -> CycleReport:
        try:
            return self._runner.first(task)
        except Exception as error:
            return CycleReport(delay=DEFAULT_DELAY, errors=(error,))

    def _report(self, task: Task, report: CycleReport) -> None:
        for error in report.errors:
            self._emit_error(task.name, error)
        if not report.instructions:
            return
        logger.debug(
            "Task %s dispatched %d instruction(s): %s",
            task.name,
            len(report.instructions),
            ", ".join(report.instructions),
            extra={"task_name": task.name},
        )
        if self._on_task is None:
            return
        for instruction in report.instructions:
            try:
                self._on_task(TaskEvent(task_name=task.name, instruction=instruction))
            except Exception as error:
                self._emit_error(task.name, error)

    def _emit_error(self, task_name: str, error: BaseException) -> None:
        log_error(task_name, error)
        if self._on_error is None:
            return
        try:
            self._on_error(ErrorEvent(task_name=task_name, error=error))
        except Exception:
            logger.exception("on_error callback failed for task %s", task_name)


def log_error(task_name: str, error: BaseException) -> None:
    """Log an error of a task at ERROR, the way every error of the loop is logged."""
    logger.error(
        "Task %s: %s: %s",
        task_name,
        type(error).__name__,
        error,
        # Our own validation errors say all there is to say; a user's
        # exception deserves its traceback.
        exc_info=None if isinstance(error, PlantonError) else error,
        extra={"task_name": task_name},
    )
