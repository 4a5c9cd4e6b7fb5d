"""Tests of the pure scheduling core, ``django_planton.core`` (no Django, no database).

Timing is never asserted exactly: the loop is polled with :func:`wait_until`
and delays are tiny, so that the suite is fast and stays reliable on a
loaded machine. Every :class:`Planton` made through the ``make_planton``
fixture is stopped when its test ends.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from django_planton import core
from django_planton.core import (
    DEFAULT_DELAY,
    ErrorEvent,
    MemoryCycleRunner,
    Planton,
    ScheduleContext,
    Task,
    TaskEvent,
    compute_delay,
    compute_limit,
    run_cycle,
    validate_instructions,
)
from django_planton.errors import (
    DuplicateTaskNameError,
    InvalidTaskConfigurationError,
    PlantonError,
    UnexpectedStateError,
    UnexpectedTaskInstructionsError,
)

from .support import Log, no_active, nothing, wait_until

TINY = 0.002


def tiny_delay(attempt_number: int) -> float:
    return TINY


class Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def __call__(self, *args, **kwargs) -> list:
        """Count a call; usable as a schedule (or get_active) that finds nothing."""
        with self._lock:
            self._value += 1
        return []

    @property
    def value(self) -> int:
        with self._lock:
            return self._value


def task(name="t", schedule=nothing, *, delay=tiny_delay, **kwargs) -> Task:
    return Task(name, schedule, calculate_delay=delay, **kwargs)


def returning(*batches, then=()):
    """A schedule returning ``batches`` one per call, then ``then`` forever; logs contexts."""
    contexts = Log()
    remaining = list(batches)
    lock = threading.Lock()

    def schedule(context: ScheduleContext):
        contexts.append(context)
        with lock:
            if remaining:
                return remaining.pop(0)
        return list(then)

    schedule.contexts = contexts
    return schedule


# -- errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UnexpectedStateError("x"), "UNEXPECTED_STATE_ERROR"),
        (InvalidTaskConfigurationError("x", task_name="t"), "INVALID_TASK_CONFIGURATION"),
        (DuplicateTaskNameError("t"), "DUPLICATE_TASK_NAME"),
        (
            UnexpectedTaskInstructionsError("x", task_name="t", unexpected_task_instructions=[1]),
            "UNEXPECTED_TASK_INSTRUCTIONS",
        ),
    ],
)
def test_errors_have_stable_codes_and_share_a_base(error, code):
    assert error.code == code
    assert type(error).code == code
    assert isinstance(error, PlantonError)
    assert isinstance(error, Exception)


def test_error_attributes():
    assert InvalidTaskConfigurationError("m", task_name="a").task_name == "a"
    assert DuplicateTaskNameError("a").duplicate_task_name == "a"
    batch = ["x", "x"]
    error = UnexpectedTaskInstructionsError("m", task_name="a", unexpected_task_instructions=batch)
    assert error.task_name == "a"
    assert error.unexpected_task_instructions is batch
    assert str(error) == "m"


# -- construction ----------------------------------------------------------------


def test_task_defaults():
    t = Task("t", nothing)
    assert t.name == "t"
    assert t.schedule is nothing
    assert t.concurrency == 1
    assert t.calculate_delay is None
    assert t.calculate_limit is None
    assert compute_delay(t, 0) == (1.0, None)
    assert compute_delay(t, 7) == (1.0, None)
    assert DEFAULT_DELAY == 1.0
    assert compute_limit(t, 1, []) == 1
    assert compute_limit(Task("u", nothing, concurrency=5), 5, ["a", "b"]) == 3


def test_tasks_compare_by_identity():
    assert Task("t", nothing) != Task("t", nothing)
    first = Task("t", nothing)
    assert first == first


def test_duplicate_task_names_raise():
    with pytest.raises(DuplicateTaskNameError) as info:
        Planton(
            tasks=[Task("a", nothing), Task("b", nothing), Task("a", nothing)],
            get_active_task_instructions=no_active,
        )
    assert info.value.duplicate_task_name == "a"
    assert info.value.code == "DUPLICATE_TASK_NAME"
    assert isinstance(info.value, PlantonError)


@pytest.mark.parametrize("concurrency", [0, -1, -100])
def test_concurrency_below_one_raises(concurrency):
    with pytest.raises(
        InvalidTaskConfigurationError, match=r"^Task concurrency must be greater than 0\.$"
    ) as info:
        Planton(
            tasks=[Task("a", nothing, concurrency=concurrency)],
            get_active_task_instructions=no_active,
        )
    assert info.value.code == "INVALID_TASK_CONFIGURATION"
    assert info.value.task_name == "a"
    assert isinstance(info.value, PlantonError)


@pytest.mark.parametrize("concurrency", [1.5, "2", True, None])
def test_non_integer_concurrency_raises(concurrency):
    with pytest.raises(InvalidTaskConfigurationError):
        Task("a", nothing, concurrency=concurrency)


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_task_name_raises(name):
    with pytest.raises(PlantonError):
        Planton(tasks=[Task(name, nothing)], get_active_task_instructions=no_active)


@pytest.mark.parametrize(
    "kwargs",
    [{"schedule": None}, {"calculate_delay": 5}, {"calculate_limit": "x"}],
    ids=["schedule", "calculate_delay", "calculate_limit"],
)
def test_non_callable_task_options_raise(kwargs):
    options = {"name": "a", "schedule": nothing, **kwargs}
    with pytest.raises(InvalidTaskConfigurationError) as info:
        Task(**options)
    assert info.value.task_name == "a"


def test_planton_rejects_non_tasks_and_missing_active_source():
    with pytest.raises(PlantonError):
        Planton(tasks=["not a task"], get_active_task_instructions=no_active)
    with pytest.raises(PlantonError):
        Planton(tasks=[Task("a", nothing)])


def test_planton_with_valid_tasks_keeps_them_in_order():
    tasks = [Task("b", nothing), Task("a", nothing, concurrency=3)]
    planton = Planton(tasks=tasks, get_active_task_instructions=no_active)
    assert planton.tasks == tuple(tasks)
    assert not planton.is_running


def test_constructing_a_planton_calls_no_user_code():
    calls = Counter()
    Planton(
        tasks=[Task("a", calls, calculate_delay=calls, calculate_limit=calls)],
        get_active_task_instructions=calls,
        on_task=calls,
        on_error=calls,
    )
    assert calls.value == 0


# -- lifecycle ---------------------------------------------------------------------


def test_start_returns_at_once_even_with_a_blocking_schedule(make_planton, gate):
    entered = threading.Event()

    def schedule(context):
        entered.set()
        gate.wait(5)
        return []

    planton = make_planton([task(schedule=schedule, delay=lambda n: 0)], start=False)
    started = time.monotonic()
    planton.start()
    assert time.monotonic() - started < 0.5
    assert planton.is_running
    assert entered.wait(2)  # the attempt runs in the background


def test_start_twice_raises(make_planton):
    planton = make_planton([task()])
    with pytest.raises(PlantonError):
        planton.start()


def test_start_after_stop_raises(make_planton):
    planton = make_planton([task()])
    planton.stop()
    with pytest.raises(PlantonError):
        planton.start()
    assert not planton.is_running


def test_stop_before_start_does_nothing(make_planton):
    calls = Counter()
    planton = make_planton(
        [Task("a", calls, calculate_delay=calls, calculate_limit=calls)],
        get_active=calls,
        on_task=calls,
        on_error=calls,
        start=False,
    )
    planton.stop()
    planton.stop(timeout=0.1)
    time.sleep(0.02)
    assert calls.value == 0


def test_stop_is_idempotent(make_planton, recorder):
    planton = make_planton([task()])
    assert wait_until(lambda: planton.is_running)
    assert planton.stop() is True
    assert planton.stop() is True
    assert planton.stop(timeout=0.1) is True
    assert not planton.is_running
    assert recorder.errors() == []


def test_stop_cancels_a_pending_wait_at_once(make_planton):
    active_calls = Counter()
    schedule_calls = Counter()
    planton = make_planton(
        [Task("t", schedule_calls, calculate_delay=lambda n: 10)], get_active=active_calls
    )
    time.sleep(0.02)
    started = time.monotonic()
    planton.stop()
    assert time.monotonic() - started < 0.5
    time.sleep(0.05)
    assert active_calls.value == 0
    assert schedule_calls.value == 0


def test_stop_cancels_a_wait_after_some_attempts(make_planton):
    active_calls = Counter()
    schedule = returning()
    planton = make_planton(
        [task(schedule=schedule, delay=lambda n: TINY if n == 0 else 10)], get_active=active_calls
    )
    assert wait_until(lambda: len(schedule.contexts) == 1)
    time.sleep(0.02)
    started = time.monotonic()
    planton.stop()
    assert time.monotonic() - started < 0.5
    time.sleep(0.05)
    assert active_calls.value == 1
    assert len(schedule.contexts) == 1


def test_stop_waits_for_a_cycle_in_flight(make_planton, gate):
    entered = threading.Event()
    finished = threading.Event()

    def schedule(context):
        entered.set()
        gate.wait(5)
        finished.set()
        return []

    planton = make_planton([task(schedule=schedule)])
    assert entered.wait(2)
    stopper = threading.Thread(target=planton.stop)
    stopper.start()
    stopper.join(0.1)
    assert stopper.is_alive(), "stop() returned while schedule() was still running"
    assert not finished.is_set()
    gate.set()
    stopper.join(2)
    assert not stopper.is_alive()
    assert finished.is_set()


def test_stop_with_timeout_gives_up_waiting(make_planton, gate):
    entered = Counter()

    def schedule(context):
        entered()
        gate.wait(5)
        return []

    planton = make_planton([task(schedule=schedule)])
    assert wait_until(lambda: entered.value == 1)
    started = time.monotonic()
    assert planton.stop(timeout=0.05) is False
    assert 0.04 <= time.monotonic() - started < 1.0
    gate.set()
    assert planton.stop(timeout=2) is True
    time.sleep(0.03)
    assert entered.value == 1  # the released cycle did not start another one


@pytest.mark.parametrize("round_", range(3))
def test_no_schedule_call_starts_after_stop_returns(make_planton, round_):
    stopped = threading.Event()
    late = Log()
    calls = Counter()
    active_calls = Counter()
    numbers = itertools.count()

    def schedule(context):
        if stopped.is_set():
            late.append(context.task_name)
        calls()
        return [f"{context.task_name}-{next(numbers)}"]

    def get_active(task_name):
        if stopped.is_set():
            late.append(("active", task_name))
        active_calls()
        return []

    planton = make_planton(
        [task(f"t{i}", schedule, delay=lambda n: 0) for i in range(4)], get_active=get_active
    )
    assert wait_until(lambda: calls.value >= 20)
    planton.stop()
    stopped.set()
    count, active_count = calls.value, active_calls.value
    time.sleep(0.05)
    assert late.items == []
    assert calls.value == count
    assert active_calls.value == active_count


def test_cycle_still_in_get_active_when_stop_gives_up_does_not_schedule(make_planton, gate):
    in_active = threading.Event()
    left_active = threading.Event()
    schedule_calls = Counter()

    def get_active(task_name):
        in_active.set()
        gate.wait(5)
        left_active.set()
        return []

    planton = make_planton([task(schedule=schedule_calls)], get_active=get_active)
    assert in_active.wait(2)
    assert planton.stop(timeout=0.02) is False
    gate.set()
    assert left_active.wait(2)
    assert planton.stop(timeout=2) is True
    assert schedule_calls.value == 0


def test_stop_from_inside_a_callback_does_not_deadlock(make_planton, recorder):
    holder: dict[str, Planton] = {}
    stopped = threading.Event()

    def on_task(event):
        holder["planton"].stop(timeout=2)
        stopped.set()

    holder["planton"] = make_planton(
        [task(schedule=returning(["a"]))], on_task=on_task, start=False
    )
    holder["planton"].start()
    assert stopped.wait(3)
    assert not holder["planton"].is_running


# -- the loop: attempt numbers, delays, saturation ---------------------------------------


def test_first_wait_is_calculate_delay_of_zero(make_planton):
    delay_args = Log()
    first_call = Log()
    started = time.monotonic()

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return 0.15 if attempt_number == 0 else 10

    def schedule(context):
        first_call.append(time.monotonic())
        return []

    make_planton([task(schedule=schedule, delay=delay)])
    assert delay_args.items[:1] == [0]
    assert wait_until(lambda: len(first_call) == 1)
    # Not before the first delay ran out (small margin for clock granularity).
    assert first_call.items[0] - started >= 0.14


def test_attempt_number_grows_on_empty_attempts_and_resets_after_work(make_planton):
    delay_args = Log()

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return TINY

    schedule = returning([], [], ["a"], [], then=[])
    make_planton([task(schedule=schedule, delay=delay)])
    assert wait_until(lambda: len(delay_args) >= 7)
    assert delay_args.items[:7] == [0, 1, 2, 0, 1, 2, 3]
    assert [c.attempt_number for c in schedule.contexts.items[:6]] == [0, 1, 2, 0, 1, 2]


def test_attempt_number_stays_zero_while_work_keeps_coming(make_planton, recorder):
    delay_args = Log()
    numbers = itertools.count()

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return TINY

    def schedule(context):
        return [next(numbers)]

    make_planton([task(schedule=schedule, delay=delay)])
    assert wait_until(lambda: len(recorder.instructions()) >= 5)
    assert set(delay_args.items[:5]) == {0}
    assert recorder.instructions()[:5] == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("active", [["a", "b"], ["a", "b", "c"]])
def test_saturated_task_is_not_scheduled_and_keeps_its_attempt_number(
    make_planton, recorder, active
):
    delay_args = Log()
    active_calls = Counter()
    schedule_calls = Counter()

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return TINY

    def get_active(task_name):
        active_calls()
        return list(active)

    make_planton([task(schedule=schedule_calls, delay=delay, concurrency=2)], get_active=get_active)
    assert wait_until(lambda: active_calls.value >= 4)
    assert schedule_calls.value == 0
    assert set(delay_args.items) == {0}
    assert recorder.errors() == []


def test_saturation_keeps_a_grown_attempt_number(make_planton):
    delay_args = Log()
    full = threading.Event()

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return TINY

    schedule = returning()
    active_calls = Counter()

    def get_active(task_name):
        active_calls()
        return ["x"] if full.is_set() else []

    make_planton([task(schedule=schedule, delay=delay)], get_active=get_active)
    assert wait_until(lambda: len(schedule.contexts) >= 2)
    full.set()
    # Let a cycle that had already read the active list finish.
    calls_at_set = active_calls.value
    assert wait_until(lambda: active_calls.value >= calls_at_set + 2)
    scheduled, seen = len(schedule.contexts), len(delay_args)
    assert wait_until(lambda: len(delay_args) >= seen + 3)
    recent = delay_args.items[seen:]
    assert len(set(recent)) == 1  # unchanged while saturated
    assert recent[0] >= 2
    assert len(schedule.contexts) == scheduled


def test_full_task_does_not_ask_for_a_limit(make_planton, recorder):
    # Step 2 comes before step 3: a custom limit cannot override a full task.
    active_calls = Counter()
    limit_calls = Counter()
    schedule_calls = Counter()

    def calculate_limit(concurrency, active):
        limit_calls()
        return 5

    def get_active(task_name):
        active_calls()
        return ["a", "b"]

    make_planton(
        [task(schedule=schedule_calls, concurrency=2, calculate_limit=calculate_limit)],
        get_active=get_active,
    )
    assert wait_until(lambda: active_calls.value >= 3)
    assert limit_calls.value == 0
    assert schedule_calls.value == 0
    assert recorder.errors() == []


def test_task_is_scheduled_again_once_slots_free_up(make_planton, recorder):
    busy = Log()

    def get_active(task_name):
        busy.append(task_name)
        return ["a", "b"] if len(busy) <= 3 else ["a"]

    schedule = returning(["c"])
    make_planton([task(schedule=schedule, concurrency=2)], get_active=get_active)
    assert wait_until(lambda: recorder.instructions() == ["c"])
    first = schedule.contexts.items[0]
    assert len(busy) >= 4
    assert first.limit == 1
    assert list(first.active_task_instructions) == ["a"]


def test_schedule_context_contents(make_planton):
    schedule = returning()
    make_planton([task("ctx", schedule, concurrency=3)], get_active=lambda name: ["x"])
    assert wait_until(lambda: len(schedule.contexts) >= 1)
    context = schedule.contexts.items[0]
    assert isinstance(context, ScheduleContext)
    assert context.task_name == "ctx"
    assert list(context.active_task_instructions) == ["x"]
    assert all(isinstance(item, str) for item in context.active_task_instructions)
    assert context.concurrency == 3
    assert context.limit == 2
    assert context.attempt_number == 0


def test_get_active_is_called_with_the_task_name_before_each_schedule(make_planton):
    order = Log()

    def get_active(task_name):
        order.append(("active", task_name))
        return []

    def schedule(context):
        order.append(("schedule", context.task_name))
        return []

    make_planton([task("a", schedule)], get_active=get_active)
    assert wait_until(lambda: len(order) >= 6)
    items = order.items[:6]
    assert items == [("active", "a"), ("schedule", "a")] * 3


# -- limits -------------------------------------------------------------------------


def test_calculate_limit_gets_concurrency_and_active_and_sets_the_limit(make_planton, recorder):
    limit_args = Log()

    def calculate_limit(concurrency, active):
        limit_args.append((concurrency, list(active)))
        return 4

    schedule = returning(["1", "2", "3", "4"])
    make_planton(
        [task(schedule=schedule, concurrency=2, calculate_limit=calculate_limit)],
        get_active=lambda name: ["z"],
    )
    assert wait_until(lambda: len(recorder.instructions()) == 4)
    assert limit_args.items[0] == (2, ["z"])
    assert schedule.contexts.items[0].limit == 4
    assert recorder.instructions() == ["1", "2", "3", "4"]
    assert recorder.errors() == []


def test_limit_zero_means_schedule_is_not_called(make_planton, recorder):
    limit_calls = Counter()
    schedule_calls = Counter()

    def calculate_limit(concurrency, active):
        limit_calls()
        return 0

    make_planton([task(schedule=schedule_calls, calculate_limit=calculate_limit)])
    assert wait_until(lambda: limit_calls.value >= 3)
    assert schedule_calls.value == 0
    assert recorder.errors() == []


@pytest.mark.parametrize("bad_limit", [-1, -100, 1.5, 1.0, "1", None, True, False])
def test_invalid_limit_is_an_unexpected_state_error(make_planton, recorder, bad_limit):
    schedule_calls = Counter()
    make_planton([task(schedule=schedule_calls, calculate_limit=lambda c, a: bad_limit)])
    assert wait_until(lambda: len(recorder.errors()) >= 3)  # reported, and the loop goes on
    errors = recorder.errors()
    assert all(isinstance(error, UnexpectedStateError) for error in errors)
    assert errors[0].code == "UNEXPECTED_STATE_ERROR"
    assert all(event.task_name == "t" for event in recorder.error_events.items)
    assert schedule_calls.value == 0


def test_failing_calculate_limit_reports_the_users_exception(make_planton, recorder):
    boom = RuntimeError("limit boom")
    schedule_calls = Counter()

    def calculate_limit(concurrency, active):
        raise boom

    make_planton([task(schedule=schedule_calls, calculate_limit=calculate_limit)])
    assert wait_until(lambda: len(recorder.errors()) >= 2)
    assert all(error is boom for error in recorder.errors())
    assert schedule_calls.value == 0


# -- dispatch -----------------------------------------------------------------------


def test_instructions_are_dispatched_as_strings_in_order(make_planton, recorder):
    schedule = returning([3, "b", 10**20], ("x", 0))
    make_planton([task("t", schedule, concurrency=3)])
    assert wait_until(lambda: len(recorder.task_events) == 5)
    time.sleep(0.02)
    events = recorder.task_events.items
    assert [event.instruction for event in events] == ["3", "b", str(10**20), "x", "0"]
    assert all(type(event.instruction) is str for event in events)
    assert all(isinstance(event, TaskEvent) and event.task_name == "t" for event in events)
    assert recorder.errors() == []


def test_empty_batches_dispatch_nothing(make_planton, recorder):
    schedule = returning([], (), then=[])
    make_planton([task(schedule=schedule)])
    assert wait_until(lambda: len(schedule.contexts) >= 4)
    assert recorder.task_events.items == []
    assert recorder.errors() == []


def test_events_of_several_tasks_carry_their_task_name(make_planton, recorder):
    make_planton([task("a", returning(["1"])), task("b", returning(["1", "2"]), concurrency=2)])
    assert wait_until(lambda: len(recorder.task_events) == 3)
    assert recorder.instructions("a") == ["1"]
    assert recorder.instructions("b") == ["1", "2"]


def _gen():
    yield "a"


INVALID_BATCHES = [
    # (id, make a fresh batch, concurrency, active)
    ("str", lambda: "abc", 5, []),
    ("set", lambda: {"a"}, 5, []),
    ("dict", lambda: {"a": 1}, 5, []),
    ("none", lambda: None, 5, []),
    ("int", lambda: 7, 5, []),
    ("generator", _gen, 5, []),
    ("over-limit", lambda: ["a", "b"], 1, []),
    ("over-limit-with-active", lambda: ["a", "b"], 2, ["z"]),
    ("float-member", lambda: ["a", 1.5], 5, []),
    ("bool-member", lambda: [True], 5, []),
    ("false-member", lambda: ["a", False], 5, []),
    ("none-member", lambda: ["a", None], 5, []),
    ("bytes-member", lambda: [b"a"], 5, []),
    ("list-member", lambda: [["a"]], 5, []),
    ("repeated-str", lambda: ["a", "a"], 5, []),
    ("repeated-int", lambda: [3, 3], 5, []),
    ("repeated-int-vs-str", lambda: [1, "1"], 5, []),
    ("already-active", lambda: ["new", "x"], 5, ["x"]),
    ("already-active-int-vs-str", lambda: [5], 5, ["5"]),
]


@pytest.mark.parametrize(
    ("make_batch", "concurrency", "active"),
    [case[1:] for case in INVALID_BATCHES],
    ids=[case[0] for case in INVALID_BATCHES],
)
def test_invalid_batch_is_one_error_and_nothing_is_dispatched(
    make_planton, recorder, make_batch, concurrency, active
):
    batches = Log()
    delay_args = Log()

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return TINY

    def schedule(context):
        batch = make_batch()
        batches.append(batch)
        return batch

    planton = make_planton(
        [task("bad", schedule, delay=delay, concurrency=concurrency)],
        get_active=lambda name: list(active),
    )
    assert wait_until(lambda: len(batches) >= 3)
    planton.stop()
    errors = recorder.errors()
    assert len(errors) == len(batches)  # one error per bad batch
    for error, batch in zip(errors, batches.items, strict=True):
        assert isinstance(error, UnexpectedTaskInstructionsError)
        assert error.code == "UNEXPECTED_TASK_INSTRUCTIONS"
        assert error.task_name == "bad"
        assert error.unexpected_task_instructions is batch
    assert all(event.task_name == "bad" for event in recorder.error_events.items)
    assert recorder.task_events.items == []
    # A rejected batch counts as no instructions: the attempt number grows.
    assert delay_args.items[:3] == [0, 1, 2]


def test_valid_batch_after_an_invalid_one_is_dispatched(make_planton, recorder):
    make_planton([task(schedule=returning(["a", "a"], ["a"]))])
    assert wait_until(lambda: recorder.instructions() == ["a"])
    assert len(recorder.errors()) == 1


# -- errors in user code --------------------------------------------------------------


def test_schedule_exception_is_reported_as_is_and_counts_as_no_work(make_planton, recorder):
    boom = ValueError("schedule boom")
    delay_args = Log()
    calls = Counter()

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return TINY

    def schedule(context):
        calls()
        raise boom

    make_planton([task("s", schedule, delay=delay)])
    assert wait_until(lambda: len(recorder.errors()) >= 3)  # the loop survives
    assert all(error is boom for error in recorder.errors())
    assert all(
        isinstance(event, ErrorEvent) and event.task_name == "s"
        for event in recorder.error_events.items
    )
    assert delay_args.items[:3] == [0, 1, 2]
    assert recorder.task_events.items == []


def test_get_active_exception_is_reported_and_schedule_not_called(make_planton, recorder):
    boom = ConnectionError("db down")
    schedule_calls = Counter()

    def get_active(task_name):
        raise boom

    make_planton([task("g", schedule_calls)], get_active=get_active)
    assert wait_until(lambda: len(recorder.errors()) >= 3)
    assert all(error is boom for error in recorder.errors())
    assert schedule_calls.value == 0


def test_loop_recovers_after_get_active_fails(make_planton, recorder):
    calls = Counter()

    def get_active(task_name):
        calls()
        if calls.value <= 2:
            raise RuntimeError("flaky")
        return []

    make_planton([task(schedule=returning(["done"]))], get_active=get_active)
    assert wait_until(lambda: recorder.instructions() == ["done"])
    assert len(recorder.errors()) == 2


def test_calculate_delay_exception_is_reported_and_falls_back_to_default(make_planton, recorder):
    boom = ArithmeticError("delay boom")
    schedule_calls = Counter()

    def delay(attempt_number):
        raise boom

    make_planton([task(schedule=schedule_calls, delay=delay)])
    assert wait_until(lambda: recorder.errors() == [boom])
    # The fallback is the 1 s default, not "at once".
    time.sleep(0.3)
    assert schedule_calls.value == 0


def test_loop_keeps_going_when_calculate_delay_always_fails(make_planton, recorder, monkeypatch):
    monkeypatch.setattr(core, "DEFAULT_DELAY", TINY)
    boom = ZeroDivisionError("delay boom")
    schedule_calls = Counter()

    def delay(attempt_number):
        raise boom

    make_planton([task(schedule=schedule_calls, delay=delay)])
    assert wait_until(lambda: schedule_calls.value >= 3)
    assert recorder.errors()[:3] == [boom, boom, boom]


@pytest.mark.parametrize("bad_delay", [-1, -0.5, math.nan, math.inf, "1", None, True, [1]])
def test_nonsensical_delay_is_an_unexpected_state_error(
    make_planton, recorder, monkeypatch, bad_delay
):
    monkeypatch.setattr(core, "DEFAULT_DELAY", TINY)
    schedule_calls = Counter()
    make_planton([task("d", schedule_calls, delay=lambda n: bad_delay)])
    assert wait_until(lambda: schedule_calls.value >= 2 and len(recorder.errors()) >= 2)
    assert all(isinstance(error, UnexpectedStateError) for error in recorder.errors())
    assert all(event.task_name == "d" for event in recorder.error_events.items)


def test_on_task_exception_does_not_stop_the_rest_of_the_batch(make_planton, recorder):
    delivered = Log()
    raised = Log()

    def on_task(event):
        delivered.append(event.instruction)
        if event.instruction in ("a", "b"):
            error = RuntimeError(f"on_task {event.instruction}")
            raised.append(error)
            raise error

    make_planton([task("o", returning(["a", "b", "c"], ["d"]), concurrency=3)], on_task=on_task)
    assert wait_until(lambda: delivered.items == ["a", "b", "c", "d"])
    assert wait_until(lambda: len(recorder.errors()) == 2)
    errors = recorder.errors()
    assert errors[0] is raised.items[0]
    assert errors[1] is raised.items[1]
    assert all(event.task_name == "o" for event in recorder.error_events.items)


def test_on_error_exception_is_only_logged(make_planton, caplog):
    caplog.set_level(logging.ERROR, logger="django_planton")
    on_error_calls = Counter()
    schedule_calls = Counter()

    def on_error(event):
        on_error_calls()
        raise RuntimeError("on_error boom")

    def schedule(context):
        schedule_calls()
        raise ValueError("schedule boom")

    make_planton([task("oe", schedule)], on_error=on_error)
    assert wait_until(lambda: schedule_calls.value >= 3 and on_error_calls.value >= 3)
    assert any(
        record.levelno >= logging.ERROR
        and "oe" in record.getMessage()
        and record.exc_info
        and "on_error boom" in str(record.exc_info[1])
        for record in caplog.records
    )


def test_failing_on_error_does_not_cut_a_batch_short(make_planton):
    delivered = Log()
    reported = Log()

    def on_task(event):
        delivered.append(event.instruction)
        raise RuntimeError(f"on_task {event.instruction}")

    def on_error(event):
        reported.append(event.error)
        raise RuntimeError("on_error boom")

    planton = make_planton(
        [task("oe", returning(["a", "b", "c"]), concurrency=3)],
        on_task=on_task,
        on_error=on_error,
    )
    assert wait_until(lambda: len(delivered) == 3)
    planton.stop()
    assert delivered.items == ["a", "b", "c"]
    # One error event per failing on_task, and none for on_error's own failures.
    assert [str(error) for error in reported.items] == ["on_task a", "on_task b", "on_task c"]


def test_failing_on_error_during_start_does_not_escape(make_planton):
    reported = Log()

    def delay(attempt_number):
        raise RuntimeError("delay boom")

    def on_error(event):
        reported.append(event.error)
        raise RuntimeError("on_error boom")

    planton = make_planton([task("s", delay=delay)], on_error=on_error, start=False)
    planton.start()  # must not raise
    assert planton.is_running
    assert [str(error) for error in reported.items] == ["delay boom"]


def test_loop_runs_without_callbacks(make_planton):
    calls = Counter()

    def schedule(context):
        calls()
        if calls.value % 2:
            raise RuntimeError("odd")
        return [str(calls.value)]

    make_planton([task(schedule=schedule)], on_task=None, on_error=None)
    assert wait_until(lambda: calls.value >= 4)


# -- independence of tasks -------------------------------------------------------------


def test_slow_schedule_does_not_delay_other_tasks(make_planton, gate):
    slow_entered = threading.Event()
    fast_calls = Counter()

    def slow(context):
        slow_entered.set()
        gate.wait(5)
        return []

    make_planton([task("slow", slow), task("fast", fast_calls)])
    assert slow_entered.wait(2)
    before = fast_calls.value
    assert wait_until(lambda: fast_calls.value >= before + 5)
    assert not gate.is_set()


def test_slow_get_active_of_one_task_does_not_delay_other_tasks(make_planton, gate):
    slow_entered = threading.Event()
    fast_calls = Counter()

    def get_active(task_name):
        if task_name == "slow":
            slow_entered.set()
            gate.wait(5)
        return []

    make_planton([task("slow"), task("fast", fast_calls)], get_active=get_active)
    assert slow_entered.wait(2)
    before = fast_calls.value
    assert wait_until(lambda: fast_calls.value >= before + 5)


def test_long_delay_of_one_task_does_not_hold_up_another(make_planton):
    slow_calls = Counter()
    fast_calls = Counter()
    make_planton(
        [
            Task("sleepy", slow_calls, calculate_delay=lambda n: 10),
            task("eager", fast_calls),
        ]
    )
    assert wait_until(lambda: fast_calls.value >= 5)
    assert slow_calls.value == 0


def test_each_task_keeps_its_own_attempt_number(make_planton):
    numbers = itertools.count()
    idle = returning()
    busy = returning()

    def working(context):
        busy(context)
        return [next(numbers)]

    make_planton([task("idle", idle), task("busy", working)])
    assert wait_until(lambda: len(idle.contexts) >= 4 and len(busy.contexts) >= 4)
    assert [c.attempt_number for c in idle.contexts.items[:4]] == [0, 1, 2, 3]
    assert {c.attempt_number for c in busy.contexts.items} == {0}


# -- wake ----------------------------------------------------------------------------


def test_wake_attempts_a_waiting_task_at_once(make_planton):
    schedule = returning()
    planton = make_planton([Task("w", schedule, calculate_delay=lambda n: 10)])
    time.sleep(0.02)
    assert len(schedule.contexts) == 0
    woken = time.monotonic()
    planton.wake("w")
    assert wait_until(lambda: len(schedule.contexts) == 1, timeout=1.0)
    assert time.monotonic() - woken < 1.0  # the task's own delay is 10 s
    time.sleep(0.05)
    assert len(schedule.contexts) == 1  # back to its 10 s delay afterwards


def test_wake_only_affects_the_named_task(make_planton):
    a = returning()
    b = returning()
    planton = make_planton(
        [Task("a", a, calculate_delay=lambda n: 10), Task("b", b, calculate_delay=lambda n: 10)]
    )
    planton.wake("b")
    assert wait_until(lambda: len(b.contexts) == 1)
    time.sleep(0.03)
    assert len(a.contexts) == 0


def test_wake_during_a_cycle_attempts_again_right_after(make_planton, gate):
    entered = Counter()

    def schedule(context):
        entered()
        if entered.value == 1:
            gate.wait(5)
        return []

    planton = make_planton([task("w", schedule, delay=lambda n: TINY if n == 0 else 10)])
    assert wait_until(lambda: entered.value == 1)
    planton.wake("w")
    gate.set()
    assert wait_until(lambda: entered.value == 2, timeout=1.0)
    time.sleep(0.05)
    assert entered.value == 2


def test_wake_is_ignored_for_unknown_tasks_and_outside_running(make_planton):
    schedule = returning()
    planton = make_planton([Task("w", schedule, calculate_delay=lambda n: 10)], start=False)
    planton.wake("w")  # before start
    planton.start()
    planton.wake("nope")  # unknown name
    time.sleep(0.03)
    assert len(schedule.contexts) == 0
    planton.stop()
    planton.wake("w")  # after stop
    time.sleep(0.03)
    assert len(schedule.contexts) == 0


# -- logging -------------------------------------------------------------------------


def test_a_debug_line_per_dispatched_batch(make_planton, caplog):
    caplog.set_level(logging.DEBUG, logger="django_planton")
    schedule = returning(["a", "b"], [], ["c"], then=[])
    planton = make_planton([task("logged", schedule, concurrency=2)])
    assert wait_until(lambda: len(schedule.contexts) >= 5)
    planton.stop()
    debug = [
        record
        for record in caplog.records
        if record.name == "django_planton"
        and record.levelno == logging.DEBUG
        and "logged" in record.getMessage()
    ]
    assert len(debug) == 2
    assert "a" in debug[0].getMessage()
    assert "b" in debug[0].getMessage()
    assert "c" in debug[1].getMessage()


def test_errors_are_logged_at_error_with_the_task_name(make_planton, caplog):
    caplog.set_level(logging.DEBUG, logger="django_planton")

    def schedule(context):
        raise KeyError("boom")

    make_planton([task("loud-task", schedule)])
    assert wait_until(
        lambda: any(
            r.levelno == logging.ERROR and "loud-task" in r.getMessage() for r in caplog.records
        )
    )
    record = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert record.name == "django_planton"


def test_validation_errors_are_logged_with_the_task_name(make_planton, caplog):
    caplog.set_level(logging.ERROR, logger="django_planton")
    make_planton([task("strict", returning(["x", "x"]))])
    assert wait_until(
        lambda: any(
            r.levelno == logging.ERROR and "strict" in r.getMessage() for r in caplog.records
        )
    )


# -- scale and threads -------------------------------------------------------------------


def test_hundreds_of_idle_tasks_start_and_stop_quickly_without_a_thread_each(make_planton):
    baseline = threading.active_count()
    schedule_calls = Counter()
    tasks = [Task(f"task-{i}", schedule_calls, calculate_delay=lambda n: 10) for i in range(300)]
    planton = make_planton(tasks, start=False)
    started = time.monotonic()
    planton.start()
    assert time.monotonic() - started < 1.0
    time.sleep(0.05)
    assert threading.active_count() <= baseline + 40
    started = time.monotonic()
    planton.stop()
    assert time.monotonic() - started < 1.0
    assert schedule_calls.value == 0


def test_hundreds_of_busy_tasks_share_a_bounded_pool(make_planton):
    baseline = threading.active_count()
    seen = Log()
    peak = Log()

    def schedule(context):
        seen.append(context.task_name)
        peak.append(threading.active_count())
        return []

    names = [f"busy-{i}" for i in range(200)]
    planton = make_planton([task(name, schedule, delay=lambda n: 0.005) for name in names])
    assert wait_until(lambda: set(seen.items) >= set(names), timeout=3)
    assert max(peak.items) <= baseline + 40
    planton.stop()


def test_importing_the_core_does_not_need_django():
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import sys\n"
        "import django_planton.core, django_planton.backoff, django_planton.errors\n"
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if 'django' in m)\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- pure functions -------------------------------------------------------------------


def test_compute_delay_passes_the_attempt_number_and_returns_floats():
    args = []

    def delay(attempt_number):
        args.append(attempt_number)
        return attempt_number * 2

    t = Task("t", nothing, calculate_delay=delay)
    assert compute_delay(t, 0) == (0.0, None)
    value, error = compute_delay(t, 3)
    assert (value, error) == (6.0, None)
    assert type(value) is float
    assert args == [0, 3]


@pytest.mark.parametrize("bad", [-1, -1e-9, math.nan, math.inf, -math.inf, "2", None, True])
def test_compute_delay_rejects_nonsense_and_falls_back(bad):
    value, error = compute_delay(Task("t", nothing, calculate_delay=lambda n: bad), 0)
    assert value == DEFAULT_DELAY == 1.0
    assert isinstance(error, UnexpectedStateError)
    assert "t" in str(error)


def test_compute_delay_returns_the_users_exception():
    boom = OSError("x")

    def delay(attempt_number):
        raise boom

    assert compute_delay(Task("t", nothing, calculate_delay=delay), 4) == (1.0, boom)


def test_compute_limit_default_custom_and_invalid():
    t = Task("t", nothing, concurrency=4)
    assert compute_limit(t, 4, []) == 4
    assert compute_limit(t, 4, ["a"]) == 3
    assert compute_limit(t, 6, ["a"]) == 5  # concurrency argument wins
    custom = Task("c", nothing, calculate_limit=lambda c, a: c * 10 + len(a))
    assert compute_limit(custom, 2, ["a"]) == 21
    for bad in (-1, 2.0, True, "3", None):
        with pytest.raises(UnexpectedStateError):
            compute_limit(Task("b", nothing, calculate_limit=lambda c, a, bad=bad: bad), 1, [])
    boom = RuntimeError()

    def failing(concurrency, active):
        raise boom

    with pytest.raises(RuntimeError) as info:
        compute_limit(Task("f", nothing, calculate_limit=failing), 1, [])
    assert info.value is boom


def test_validate_instructions_normalises_to_strings():
    assert validate_instructions("t", [1, "a", 0], limit=3, active=["b"]) == ("1", "a", "0")
    assert validate_instructions("t", ("x",), limit=1, active=[]) == ("x",)
    assert validate_instructions("t", [], limit=0, active=["a"]) == ()
    result = validate_instructions("t", [-5, 10**30], limit=2, active=[])
    assert result == ("-5", str(10**30))
    assert all(type(item) is str for item in result)


@pytest.mark.parametrize(
    ("batch", "limit", "active"),
    [
        ("ab", 5, []),
        ({"a"}, 5, []),
        (None, 5, []),
        (["a", "b"], 1, []),
        (["a"], 0, []),
        ([1.0], 5, []),
        ([True], 5, []),
        ([None], 5, []),
        (["a", "a"], 5, []),
        ([1, "1"], 5, []),
        (["1", 1], 5, []),
        ([5], 5, ["5"]),
        (["5"], 5, ["5"]),
        (["ok", "5"], 5, ["5"]),
    ],
)
def test_validate_instructions_rejects_the_whole_batch(batch, limit, active):
    with pytest.raises(UnexpectedTaskInstructionsError) as info:
        validate_instructions("v", batch, limit=limit, active=active)
    assert info.value.unexpected_task_instructions is batch
    assert info.value.task_name == "v"
    assert "v" in str(info.value)


def test_run_cycle_outcomes():
    t = Task("t", returning(["a", 2]), concurrency=3)
    outcome = run_cycle(t, attempt_number=4, active_task_instructions=["x"])
    assert outcome.instructions == ("a", "2")
    assert outcome.attempt_number == 0
    assert outcome.scheduled
    assert not outcome.failed
    assert outcome.errors == ()
    assert outcome.limit == 2

    empty = run_cycle(Task("e", nothing), attempt_number=4, active_task_instructions=[])
    assert empty.instructions == ()
    assert empty.attempt_number == 5
    assert empty.scheduled

    saturated = run_cycle(
        Task("s", returning(["a"])), attempt_number=4, active_task_instructions=["x"]
    )
    assert saturated.attempt_number == 4
    assert not saturated.scheduled
    assert saturated.saturated
    assert saturated.instructions == ()


def test_run_cycle_reports_errors_instead_of_raising():
    boom = RuntimeError("boom")

    def failing(context):
        raise boom

    outcome = run_cycle(Task("t", failing), attempt_number=1, active_task_instructions=[])
    assert outcome.errors == (boom,)
    assert outcome.failed
    assert outcome.attempt_number == 2
    assert outcome.instructions == ()

    invalid = run_cycle(Task("t", returning([1, 1])), attempt_number=0, active_task_instructions=[])
    assert isinstance(invalid.errors[0], UnexpectedTaskInstructionsError)
    assert invalid.attempt_number == 1
    assert invalid.instructions == ()

    bad_limit = run_cycle(
        Task("t", nothing, calculate_limit=lambda c, a: -1),
        attempt_number=3,
        active_task_instructions=[],
    )
    assert isinstance(bad_limit.errors[0], UnexpectedStateError)
    assert bad_limit.attempt_number == 3
    assert not bad_limit.scheduled

    for bad_active in (None, 5, "abc"):
        outcome = run_cycle(
            Task("t", nothing), attempt_number=2, active_task_instructions=bad_active
        )
        assert isinstance(outcome.errors[0], UnexpectedStateError)
        assert outcome.attempt_number == 2
        assert not outcome.scheduled


def test_run_cycle_respects_may_schedule_and_concurrency_override():
    schedule = returning(["a"])
    refused = run_cycle(
        Task("t", schedule),
        attempt_number=2,
        active_task_instructions=[],
        may_schedule=lambda: False,
    )
    assert not refused.scheduled
    assert refused.attempt_number == 2
    assert len(schedule.contexts) == 0

    override = run_cycle(
        Task("t", returning(["a", "b"])),
        attempt_number=0,
        active_task_instructions=["x"],
        concurrency=3,
    )
    assert override.instructions == ("a", "b")
    assert override.limit == 2


def test_memory_cycle_runner_tracks_attempt_numbers_per_task():
    delay_args = []
    active = {"a": [], "b": ["busy"]}
    runner = MemoryCycleRunner(lambda name: active[name])

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return attempt_number + 0.5

    a = Task("a", returning([], [], ["x"]), calculate_delay=delay)
    b = Task("b", returning(["y"]), calculate_delay=delay)
    assert runner.first(a).delay == 0.5
    assert runner.first(b).delay == 0.5
    assert runner.run(a, lambda: True).delay == 1.5
    assert runner.run(a, lambda: True).delay == 2.5
    report = runner.run(a, lambda: True)
    assert report.instructions == ("x",)
    assert report.delay == 0.5
    assert report.errors == ()
    saturated = runner.run(b, lambda: True)  # b is full: no attempt, number unchanged
    assert saturated.instructions == ()
    assert saturated.delay == 0.5


def test_memory_cycle_runner_reports_errors():
    boom = RuntimeError("active boom")

    def get_active(name):
        raise boom

    runner = MemoryCycleRunner(get_active)
    t = Task("t", nothing, calculate_delay=lambda n: 0.25)
    runner.first(t)
    report = runner.run(t, lambda: True)
    assert report.errors == (boom,)
    assert report.delay == 0.25

    failing_delay = MemoryCycleRunner(no_active)
    t2 = Task("t2", nothing, calculate_delay=lambda n: math.nan)
    first = failing_delay.first(t2)
    assert first.delay == 1.0
    assert isinstance(first.errors[0], UnexpectedStateError)


# -- the documented attempt hook -------------------------------------------------


def test_around_attempt_wraps_every_attempt_in_its_worker_thread(make_planton):
    entered = Log()

    @contextlib.contextmanager
    def around(names):
        entered.append((tuple(names), threading.current_thread().name, "enter"))
        yield
        entered.append((tuple(names), threading.current_thread().name, "exit"))

    calls = Log()

    def schedule(context):
        calls.append(threading.current_thread().name)
        return []

    planton = make_planton(
        [Task(name="hooked", schedule=schedule, calculate_delay=lambda attempt: 0.01)],
        around_attempt=around,
    )
    assert wait_until(lambda: len(calls) >= 2)
    planton.stop(timeout=5)
    enters = [item for item in entered.items if item[2] == "enter"]
    exits = [item for item in entered.items if item[2] == "exit"]
    assert len(enters) == len(exits) >= len(calls) >= 2
    assert {names for names, _, _ in enters} == {("hooked",)}
    assert {thread for _, thread, _ in enters} <= set(calls.items)
    assert planton.max_workers == 1


def test_a_raising_attempt_hook_is_reported_and_the_loop_goes_on(make_planton, recorder):
    def around(names):
        raise RuntimeError("hook broke")

    make_planton(
        [Task(name="hooked", schedule=nothing, calculate_delay=lambda attempt: 0.01)],
        around_attempt=around,
    )
    assert wait_until(lambda: len(recorder.error_events) >= 2)
    assert all("hook broke" in str(event.error) for event in recorder.error_events.items)
