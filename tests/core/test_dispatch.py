"""Dispatching instructions, errors in user code and what the loop logs.

Timing is never asserted exactly: the loop is polled with :func:`wait_until`
and delays are tiny, so that the suite is fast and stays reliable on a
loaded machine. Every :class:`Planton` made through the ``make_planton``
fixture is stopped when its test ends.
"""

from __future__ import annotations

import logging
import math
import time

import pytest

from django_planton import core
from django_planton.core import ErrorEvent, TaskEvent
from django_planton.errors import UnexpectedStateError, UnexpectedTaskInstructionsError

from ..support import Log, wait_until
from .helpers import TINY, Counter, returning, task

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
