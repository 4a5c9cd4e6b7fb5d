"""The loop: one timer thread hands due tasks to a bounded pool of worker threads.

A process can carry hundreds of mostly idle tasks without a thread per task,
and a slow ``schedule`` of one task does not hold up another as long as there
are free workers. Where attempt state lives is the :class:`CycleRunner`'s
business; when a task is due is the :class:`DueQueue`'s; who was woken is
the :class:`WakeUps`'.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from ..errors import DuplicateTaskNameError, PlantonError
from .due import DueQueue
from .events import EventSink
from .rules import DEFAULT_DELAY
from .runners import (
    BatchCycleRunner,
    CycleReport,
    CycleRunner,
    MemoryCycleRunner,
    attempt,
    first_report,
)
from .task import ErrorEvent, Task, TaskEvent, validate_task
from .wakeups import WakeUps
from .watchdog import CycleWatchdog, InFlight

__all__ = ["BATCH_SIZE", "BATCH_SLACK", "AttemptHook", "Planton"]

logger = logging.getLogger("django_planton")

# Tasks that found nothing last time may be attempted this much later than
# due (at most a tenth of their delay), so that the loop can attempt those due
# close together in one batch; never earlier than due.
BATCH_SLACK = 0.02

# Hand-off between runners: a runner that has just attempted a quiet task
# comes back for it after the whole slack, one that has not (another runner
# did) within the first part of it, at random. The next attempt of a task that
# finds nothing then goes to another runner when one is there, instead of the
# same runner winning every race for the row by a millisecond.
HAND_OFF_SHARE = 0.5

# The most tasks in one batch: a batch runs its schedules one after another in
# one worker thread, so a batch must stay short next to the delays it serves.
BATCH_SIZE = 200

# The longest single wait of the timer thread: ``Condition.wait`` refuses
# timeouts above ``threading.TIMEOUT_MAX``, and a long delay is simply waited
# out in slices.
_MAX_WAIT_SLICE = 3600.0

#: Called with the task names of each attempt (one task, or a batch); the
#: context manager it returns is entered around the attempt, in the worker
#: thread that runs it. A documented hook for profilers and benchmarks.
AttemptHook = Callable[[Sequence[str]], contextlib.AbstractContextManager[object]]


def _no_hook(names: Sequence[str]) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext()


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
    ``wakeups`` shares this process's :class:`WakeUps` with a cycle runner.
    ``slow_cycle_warning`` (seconds, None for never) logs a warning about a
    cycle that runs longer, once, and again when it ends (:class:`CycleWatchdog`).
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
        wakeups: WakeUps | None = None,
        slow_cycle_warning: float | None = None,
    ) -> None:
        self._tasks = _by_name(tasks)
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
        self._around_attempt = around_attempt or _no_hook
        self._events = EventSink(on_task, on_error)
        self._max_workers = max_workers or max(1, min(32, len(self._tasks)))
        self._batch_size = batch_size or BATCH_SIZE
        self._batching = isinstance(cycle_runner, BatchCycleRunner) and self._batch_size > 1
        self._wakeups = wakeups or WakeUps()
        self._watchdog = CycleWatchdog(slow_cycle_warning)
        self._random = random.Random()

        self._condition = threading.Condition()
        self._state = "new"  # new -> running -> stopped
        self._due = DueQueue()
        self._in_flight: set[str] = set()  # tasks whose cycle runs now
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

    def cycles_in_flight(self) -> list[InFlight]:
        """The cycles running now (their tasks, and since when), the oldest first."""
        return self._watchdog.in_flight()

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
            report = first_report(self._runner, task)
            self._events.report(task, report)
            self._schedule_next([(task.name, report)])
        self._timer = threading.Thread(target=self._timer_loop, name="planton-timer", daemon=True)
        self._timer.start()
        self._watchdog.start()

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
            self._due.clear()
            self._condition.notify_all()
            finished = self._condition.wait_for(
                lambda: not (self._busy_threads - {me}), timeout=timeout
            )
        self._watchdog.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        timer = self._timer
        if timer is not None and timer is not threading.current_thread():
            timer.join(timeout=1.0)
        return finished

    def wake(
        self, task_name: str, *, force: bool = False, ended: Collection[str] | None = None
    ) -> None:
        """Attempt a task now instead of at its next due time.

        Used when a slot frees up (an execution ended) so that waiting work
        does not wait out the delay; :meth:`WakeUps.wake` decides whether the
        wake-up is worth it (``force``: new work is known to wait). A task
        whose cycle runs now is attempted again right after it, unless that
        cycle saw the slot free already (``ended``: the ended instructions,
        when known). Unknown names are ignored: a wake-up is a hint.
        """
        with self._condition:
            if self._state != "running" or task_name not in self._tasks:
                return
            if not self._wakeups.wake(task_name, force=force):
                return
            if task_name in self._in_flight:
                self._wakeups.defer(task_name, ended)
                return
            now = time.monotonic()
            if self._due.push(task_name, now, now):
                self._condition.notify_all()

    # -- internals ---------------------------------------------------------

    def _schedule_next(self, reports: Iterable[tuple[str, CycleReport]]) -> None:
        """Put tasks back in the heap after their attempt, each ``delay`` seconds from now."""
        with self._condition:
            if self._state != "running":
                return
            now = time.monotonic()
            for task_name, report in reports:
                delay = report.delay
                if self._wakeups.take_deferred(task_name):
                    delay = 0.0
                slack = self._slack(task_name, delay, attempted=report.waiting is None)
                self._due.push(task_name, now + delay + slack, now + delay)
            self._condition.notify_all()

    def _slack(self, task_name: str, delay: float, *, attempted: bool) -> float:
        """How late a quiet task may be handed out: the batching slack, and the hand-off."""
        if not (self._batching and self._wakeups.is_quiet(task_name)):
            return 0.0
        slack = min(BATCH_SLACK, delay / 10)
        return slack if attempted else self._random.uniform(0.0, slack * HAND_OFF_SHARE)

    def _timer_loop(self) -> None:
        with self._condition:
            while self._state == "running":
                at = self._due.next_at()
                if at is None:
                    self._condition.wait()
                    continue
                now = time.monotonic()
                if at > now:
                    self._condition.wait(min(at - now, _MAX_WAIT_SLICE))
                    continue
                self._hand_out(self._due.pop().task_name, now)

    def _hand_out(self, task_name: str, now: float) -> None:
        """Give a due task (and, when quiet, the other quiet tasks due) to the workers."""
        assert self._pool is not None
        if not (self._batching and self._wakeups.is_quiet(task_name)):
            self._in_flight.add(task_name)
            self._pool.submit(self._attempt, [self._tasks[task_name]], batch=False)
            return
        names = [task_name, *self._due.take_due(now, self._wakeups.is_quiet)]
        self._in_flight.update(names)
        for start in range(0, len(names), self._batch_size):
            batch = [self._tasks[name] for name in names[start : start + self._batch_size]]
            self._pool.submit(self._attempt, batch, batch=True)

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
        after: dict[str, CycleReport] = dict.fromkeys(names, CycleReport(delay=DEFAULT_DELAY))
        try:
            with self._watchdog.watch(names), self._around_attempt(names):
                reports = attempt(self._runner, tasks, self._may_schedule, batch=batch)
            logged = self._events.batch_errors(tasks, reports) if batch else frozenset()
            for task, report in zip(tasks, reports, strict=True):
                after[task.name] = report
                self._wakeups.finished(task.name, dispatched=bool(report.instructions))
                self._events.report(task, report, logged=logged)
        except Exception as error:  # a runner bug must not end the tasks' loops
            for name in names:
                self._events.error(name, error)
        finally:
            with self._condition:
                self._in_flight.difference_update(names)
                self._busy_threads.discard(me)
                self._condition.notify_all()
            self._schedule_next(after.items())


def _by_name(tasks: Sequence[Task]) -> dict[str, Task]:
    by_name: dict[str, Task] = {}
    for task in tasks:
        if not isinstance(task, Task):
            raise PlantonError(f"Expected a Task, got {task!r}.")
        validate_task(task)
        if task.name in by_name:
            raise DuplicateTaskNameError(task.name)
        by_name[task.name] = task
    return by_name
