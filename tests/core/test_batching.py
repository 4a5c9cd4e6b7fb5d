"""Tests of batching in the scheduling core (no Django, no database).

With a :class:`~django_planton.core.BatchCycleRunner`, tasks whose last
attempt dispatched nothing ("quiet" tasks) and that are due together go to
``run_batch`` in chunks of at most ``batch_size``; a task that dispatched, or
that was woken, goes alone through ``run``. The fake runners here record
every call (kind, task names, monotonic time) and build their reports from a
small function, so each test states what the loop should hand them.

Timing is never asserted exactly: the loop is polled with :func:`wait_until`,
and the only time comparisons are lower bounds ("not before it was due"),
which hold however slow the machine is.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from django_planton import core
from django_planton.core import (
    BATCH_SIZE,
    BATCH_SLACK,
    BatchCycleRunner,
    CycleReport,
    MemoryCycleRunner,
    Planton,
    Task,
)
from django_planton.errors import PlantonError, UnexpectedStateError

from ..support import Log, nothing, wait_until

#: A delay no test waits out: a task given it is not attempted again.
LONG = 30.0


@dataclass(frozen=True)
class Call:
    kind: str  # "run" or "batch"
    names: tuple[str, ...]
    at: float


def quiet_report(task: Task, kind: str, number: int) -> CycleReport:
    """The default report: nothing found, and no attempt again during the test."""
    return CycleReport(delay=LONG)


ReportFunction = Callable[[Task, str, int], CycleReport]


class PlainRunner:
    """A CycleRunner without ``run_batch`` that records every call.

    ``report(task, kind, number)`` builds each report, ``number`` counting the
    task's attempts from 0; ``first_delay`` is a number of seconds or a
    function of the task.
    """

    def __init__(
        self,
        report: ReportFunction = quiet_report,
        first_delay: float | Callable[[Task], float] = 0.0,
    ) -> None:
        self.calls = Log()
        self._report = report
        self._first_delay = first_delay
        self._lock = threading.Lock()
        self._numbers: dict[str, int] = {}

    def first(self, task: Task) -> CycleReport:
        delay = self._first_delay(task) if callable(self._first_delay) else self._first_delay
        return CycleReport(delay=delay)

    def run(self, task: Task, may_schedule: Callable[[], bool]) -> CycleReport:
        self.calls.append(Call("run", (task.name,), time.monotonic()))
        return self._report(task, "run", self._next_number(task))

    def _next_number(self, task: Task) -> int:
        with self._lock:
            number = self._numbers.get(task.name, 0)
            self._numbers[task.name] = number + 1
            return number

    # -- what the loop did --------------------------------------------------

    def batches(self) -> list[tuple[str, ...]]:
        return [call.names for call in self.calls.items if call.kind == "batch"]

    def runs(self) -> list[str]:
        return [call.names[0] for call in self.calls.items if call.kind == "run"]

    def kinds(self, name: str) -> list[str]:
        """How each attempt of a task was made, in order."""
        return [call.kind for call in self.calls.items if name in call.names]

    def attempted(self, name: str) -> int:
        return len(self.kinds(name))


class BatchRunner(PlainRunner):
    """A BatchCycleRunner that records every call."""

    def run_batch(
        self, tasks: Sequence[Task], may_schedule: Callable[[], bool]
    ) -> list[CycleReport]:
        self.calls.append(Call("batch", tuple(task.name for task in tasks), time.monotonic()))
        return [self._report(task, "batch", self._next_number(task)) for task in tasks]


def tasks_named(*names: str) -> list[Task]:
    return [Task(name, nothing) for name in names]


# -- which runners batch -----------------------------------------------------------


def test_only_runners_with_run_batch_are_batch_cycle_runners():
    assert isinstance(BatchRunner(), BatchCycleRunner)
    assert not isinstance(PlainRunner(), BatchCycleRunner)
    assert not isinstance(MemoryCycleRunner(lambda name: []), BatchCycleRunner)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_raises(batch_size):
    with pytest.raises(PlantonError, match="batch_size"):
        Planton(tasks_named("a"), cycle_runner=BatchRunner(), batch_size=batch_size)


def test_batch_size_one_never_calls_run_batch(make_planton):
    runner = BatchRunner()
    make_planton(tasks_named("a", "b", "c", "d"), cycle_runner=runner, batch_size=1)
    assert wait_until(lambda: len(runner.calls) >= 4)
    time.sleep(0.02)
    assert runner.batches() == []
    assert sorted(runner.runs()) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("batch_size", [None, 50])
def test_runner_without_run_batch_attempts_each_task_alone(make_planton, batch_size):
    runner = PlainRunner()
    assert not hasattr(runner, "run_batch")
    make_planton(tasks_named("a", "b", "c", "d"), cycle_runner=runner, batch_size=batch_size)
    assert wait_until(lambda: len(runner.calls) >= 4)
    time.sleep(0.02)
    assert sorted(runner.runs()) == ["a", "b", "c", "d"]
    assert len(runner.calls) == 4


def test_memory_runner_runs_quiet_tasks_in_parallel_not_one_after_another():
    # All three schedules must be inside at once to pass the barrier: a batch
    # would call them one after another in a single worker thread.
    barrier = threading.Barrier(3, timeout=2)
    threads = Log()

    def schedule(context):
        if context.attempt_number == 0:
            threads.append(threading.current_thread().name)
            barrier.wait()
        return []

    tasks = [
        Task(name, schedule, calculate_delay=lambda n: 0.0 if n == 0 else LONG) for name in "abc"
    ]
    errors = Log()
    planton = Planton(tasks, lambda name: [], on_error=errors.append)
    planton.start()
    try:
        assert wait_until(lambda: len(threads) == 3)
        time.sleep(0.02)
    finally:
        barrier.abort()
        planton.stop(timeout=5)
    assert errors.items == []
    assert len(set(threads.items)) == 3


# -- quiet tasks due together --------------------------------------------------------


def test_quiet_tasks_due_at_start_share_one_run_batch(make_planton):
    runner = BatchRunner()
    make_planton(tasks_named("a", "b", "c", "d", "e"), cycle_runner=runner)
    assert wait_until(lambda: len(runner.calls) >= 1)
    time.sleep(0.02)
    assert runner.runs() == []
    [batch] = runner.batches()
    assert sorted(batch) == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("batch_size", [2, 3])
def test_batch_size_caps_each_run_batch_and_covers_every_task_once(make_planton, batch_size):
    names = ["a", "b", "c", "d", "e"]
    runner = BatchRunner()
    make_planton(tasks_named(*names), cycle_runner=runner, batch_size=batch_size)
    expected_calls = math.ceil(len(names) / batch_size)
    assert wait_until(lambda: len(runner.calls) >= expected_calls)
    time.sleep(0.02)
    batches = runner.batches()
    assert runner.runs() == []
    assert len(batches) == expected_calls
    assert all(1 <= len(batch) <= batch_size for batch in batches)
    assert sorted(name for batch in batches for name in batch) == names


def test_default_batch_size_is_batch_size(make_planton):
    names = [f"t{number:03}" for number in range(BATCH_SIZE + 1)]
    runner = BatchRunner()
    make_planton(tasks_named(*names), cycle_runner=runner)
    assert wait_until(lambda: len(runner.calls) >= 2)
    time.sleep(0.02)
    assert sorted(len(batch) for batch in runner.batches()) == [1, BATCH_SIZE]
    assert sorted(name for batch in runner.batches() for name in batch) == names


def test_each_report_of_a_batch_goes_to_its_own_task(make_planton, recorder):
    def report(task, kind, number):
        if number > 0:
            return CycleReport(delay=LONG)
        return CycleReport(
            delay=LONG, instructions=(f"{task.name}:work",), errors=(ValueError(task.name),)
        )

    runner = BatchRunner(report)
    make_planton(tasks_named("a", "b", "c", "d"), cycle_runner=runner)
    assert wait_until(lambda: len(recorder.error_events) >= 4 and len(recorder.task_events) >= 4)
    assert len(runner.batches()) == 1
    task_events = recorder.task_events.items
    assert sorted(event.task_name for event in task_events) == ["a", "b", "c", "d"]
    assert all(event.instruction == f"{event.task_name}:work" for event in task_events)
    error_events = recorder.error_events.items
    assert sorted(event.task_name for event in error_events) == ["a", "b", "c", "d"]
    assert all(str(event.error) == event.task_name for event in error_events)


def test_a_task_that_dispatched_is_attempted_alone_until_it_finds_nothing(make_planton):
    # "busy" dispatches on its first three attempts, then finds nothing.
    def report(task, kind, number):
        if task.name == "busy" and number < 3:
            return CycleReport(delay=0.02, instructions=(f"w{number}",))
        return CycleReport(delay=0.02 if number < 8 else LONG)

    runner = BatchRunner(report)
    make_planton(tasks_named("busy", "q1", "q2"), cycle_runner=runner)
    assert wait_until(lambda: runner.attempted("busy") >= 5)
    assert wait_until(lambda: runner.attempted("q1") >= 5 and runner.attempted("q2") >= 5)

    # The first attempt is a batch (every task starts quiet); each attempt
    # after one that dispatched goes alone; once it found nothing, a batch.
    assert runner.kinds("busy")[:5] == ["batch", "run", "run", "run", "batch"]
    assert set(runner.runs()) == {"busy"}
    assert set(runner.kinds("q1")) == {"batch"}
    assert set(runner.kinds("q2")) == {"batch"}


def test_a_quiet_task_not_yet_due_is_left_out_of_the_batch(make_planton):
    runner = BatchRunner(first_delay=lambda task: 0.3 if task.name == "late" else 0.0)
    started = time.monotonic()
    make_planton(tasks_named("a", "late", "b"), cycle_runner=runner)
    assert wait_until(lambda: runner.attempted("late") >= 1)
    first, *rest = runner.calls.items
    assert first.kind == "batch"
    assert sorted(first.names) == ["a", "b"]
    [late] = rest
    assert late.names == ("late",)
    assert late.kind == "batch"  # still quiet, so batched, even if alone
    assert late.at >= started + 0.3


def test_quiet_tasks_due_within_the_slack_share_a_batch(make_planton):
    # Reported from one batch, "b" falls due 5 ms after "a"; "a" is handed
    # out 10 ms after it is due (a tenth of its delay), so it takes "b"
    # along. "c" falls due long after that, and is attempted on its own.
    delays = {"a": 0.1, "b": 0.105, "c": 0.25}

    def report(task, kind, number):
        return CycleReport(delay=delays[task.name] if number == 0 else LONG)

    runner = BatchRunner(report)
    make_planton(tasks_named("a", "b", "c"), cycle_runner=runner)
    assert wait_until(lambda: runner.attempted("c") >= 2)
    time.sleep(0.02)
    first, second, third = runner.calls.items
    assert sorted(first.names) == ["a", "b", "c"]
    assert sorted(second.names) == ["a", "b"]
    assert third.names == ("c",)
    assert third.at - first.at >= delays["c"]


def test_quiet_tasks_are_handed_out_late_by_at_most_a_tenth_of_their_delay(make_planton):
    # Reads the heap's entries: they are only handed out well after the check.
    delays = {"short": 0.15, "long": 10.0, "none": LONG}
    runner = BatchRunner(first_delay=lambda task: delays[task.name])
    planton = make_planton(tasks_named(*delays), cycle_runner=runner)
    with planton._condition:
        slack = {name: due.at - due.due_at for name, due in planton._due.pending.items()}
    assert slack == pytest.approx({"short": 0.015, "long": BATCH_SLACK, "none": BATCH_SLACK})

    plain = make_planton(
        tasks_named(*delays), cycle_runner=PlainRunner(first_delay=lambda task: delays[task.name])
    )
    with plain._condition:
        assert {due.at - due.due_at for due in plain._due.pending.values()} == {0.0}


def test_no_task_is_attempted_before_it_is_due_nor_twice_at_once(make_planton):
    # Each task's delays cycle through values around the slack, so tasks fall
    # due close together, apart, and in every order. The runner checks every
    # attempt against the earliest moment the task can be due: the time it
    # returned the task's last report plus that report's delay.
    cycle = [0.0, 0.004, 0.013, 0.021, 0.05, 0.008]
    lock = threading.Lock()
    earliest: dict[str, float] = {}
    in_flight: set[str] = set()
    problems = Log()
    batch_sizes = Log()

    class CheckingRunner(BatchRunner):
        def first(self, task):
            with lock:
                earliest[task.name] = time.monotonic()
            return CycleReport(delay=0.0)

        def run_batch(self, tasks, may_schedule):
            self._enter(tasks)
            batch_sizes.append(len(tasks))
            return self._leave(tasks, super().run_batch(tasks, may_schedule))

        def run(self, task, may_schedule):
            self._enter([task])
            return self._leave([task], [super().run(task, may_schedule)])[0]

        def _enter(self, tasks):
            now = time.monotonic()
            with lock:
                for task in tasks:
                    if now < earliest[task.name]:
                        problems.append(("early", task.name, earliest[task.name] - now))
                    if task.name in in_flight:
                        problems.append(("twice", task.name))
                    in_flight.add(task.name)

        def _leave(self, tasks, reports):
            now = time.monotonic()
            with lock:
                for task, report in zip(tasks, reports, strict=True):
                    earliest[task.name] = now + report.delay
                    in_flight.discard(task.name)
            return reports

    def report(task, kind, number):
        offset = int(task.name[1:])
        return CycleReport(delay=cycle[(number + offset) % len(cycle)])

    runner = CheckingRunner(report)
    make_planton(
        tasks_named(*(f"t{number}" for number in range(12))), cycle_runner=runner, max_workers=4
    )
    assert wait_until(lambda: all(runner.attempted(f"t{n}") >= 15 for n in range(12)), timeout=5)
    assert problems.items == []
    assert runner.runs() == []
    assert max(batch_sizes.items) > 1


# -- tasks attempted alone ---------------------------------------------------------


def test_a_woken_task_is_attempted_alone_through_run(make_planton):
    def report(task, kind, number):
        return CycleReport(delay=0.03 if kind == "run" else LONG)

    runner = BatchRunner(report, first_delay=LONG)
    planton = make_planton(tasks_named("a", "b", "c"), cycle_runner=runner, max_workers=3)
    planton.wake("a")
    planton.wake("b")
    assert wait_until(lambda: runner.attempted("a") >= 2 and runner.attempted("b") >= 2)
    time.sleep(0.02)
    # Woken: alone. Once it found nothing, it is quiet again, and batched.
    assert runner.kinds("a") == ["run", "batch"]
    assert runner.kinds("b") == ["run", "batch"]
    assert runner.kinds("c") == []
    assert sorted(runner.runs()) == ["a", "b"]


def test_a_task_woken_during_its_batch_is_attempted_alone_right_after(make_planton, gate):
    entered = threading.Event()

    class BlockingRunner(BatchRunner):
        def run_batch(self, tasks, may_schedule):
            entered.set()
            assert gate.wait(5)
            return super().run_batch(tasks, may_schedule)

    runner = BlockingRunner()
    planton = make_planton(tasks_named("a", "b"), cycle_runner=runner)
    assert entered.wait(2)
    planton.wake("a")
    gate.set()
    assert wait_until(lambda: runner.attempted("a") >= 2)
    assert runner.kinds("a") == ["batch", "run"]


# -- a runner that gets a batch wrong --------------------------------------------------


def _too_few(tasks):
    return [CycleReport(delay=0.0, instructions=("x",)) for _ in tasks[:-1]]


def _too_many(tasks):
    return [CycleReport(delay=0.0, instructions=("x",)) for _ in [*tasks, None]]


BOOM = RuntimeError("run_batch broke")


def _raising(tasks):
    raise BOOM


@pytest.mark.parametrize("misbehave", [_too_few, _too_many, _raising])
def test_a_broken_batch_is_an_error_for_each_of_its_tasks_and_the_loop_goes_on(
    make_planton, recorder, monkeypatch, caplog, misbehave
):
    monkeypatch.setattr(core, "DEFAULT_DELAY", 0.01)
    caplog.set_level(logging.ERROR, logger="django_planton")
    broken = threading.Event()

    class BrokenOnceRunner(BatchRunner):
        def run_batch(self, tasks, may_schedule):
            if not broken.is_set():
                broken.set()
                self.calls.append(Call("broken", tuple(task.name for task in tasks), 0.0))
                return misbehave(tasks)
            return super().run_batch(tasks, may_schedule)

    runner = BrokenOnceRunner()
    make_planton(tasks_named("a", "b", "c"), cycle_runner=runner)
    assert wait_until(lambda: all(runner.attempted(name) >= 2 for name in "abc"))

    errors = recorder.error_events.items
    assert sorted(event.task_name for event in errors) == ["a", "b", "c"]
    for event in errors:
        if misbehave is _raising:
            assert event.error is BOOM
        else:
            assert isinstance(event.error, UnexpectedStateError)
            assert "reports" in str(event.error)
    assert recorder.task_events.items == []  # nothing of a broken batch is dispatched
    logged = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert sorted(record.task_name for record in logged) == ["a", "b", "c"]
    # Re-scheduled together after DEFAULT_DELAY, still quiet: one batch again.
    first, second = runner.calls.items[:2]
    assert first.kind == "broken"
    assert sorted(first.names) == ["a", "b", "c"]
    assert second.kind == "batch"
    assert sorted(second.names) == ["a", "b", "c"]


# -- stopping ------------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_no_run_batch_or_schedule_starts_after_stop_returns(make_planton, round_):
    stopped = threading.Event()
    late = Log()
    schedules = Log()

    class SchedulingRunner(BatchRunner):
        def run_batch(self, tasks, may_schedule):
            if stopped.is_set():
                late.append(("run_batch", [task.name for task in tasks]))
            for task in tasks:
                if may_schedule():
                    if stopped.is_set():
                        late.append(("schedule", task.name))
                    schedules.append(task.name)
            return super().run_batch(tasks, may_schedule)

    def report(task, kind, number):
        return CycleReport(delay=0.0)

    runner = SchedulingRunner(report)
    planton = make_planton(tasks_named("a", "b", "c", "d"), cycle_runner=runner)
    assert wait_until(lambda: len(runner.batches()) >= 20)
    assert planton.stop(timeout=2) is True
    stopped.set()
    calls, scheduled = len(runner.calls), len(schedules)
    time.sleep(0.05)
    assert late.items == []
    assert len(runner.calls) == calls
    assert len(schedules) == scheduled


def test_stop_waits_for_a_batch_in_flight_whose_may_schedule_turns_false(make_planton, gate):
    entered = threading.Event()
    left = threading.Event()
    answers = Log()

    class BlockingRunner(BatchRunner):
        def run_batch(self, tasks, may_schedule):
            answers.append(may_schedule())
            entered.set()
            gate.wait(5)
            answers.append(may_schedule())
            try:
                return super().run_batch(tasks, may_schedule)
            finally:
                left.set()

    runner = BlockingRunner()
    planton = make_planton(tasks_named("a", "b"), cycle_runner=runner)
    assert entered.wait(2)
    assert planton.stop(timeout=0.02) is False  # the batch is still in flight
    gate.set()
    assert left.wait(2)
    assert planton.stop(timeout=2) is True
    assert answers.items == [True, False]
    assert len(runner.batches()) == 1
