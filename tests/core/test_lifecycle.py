"""Starting and stopping a Planton: at once, idempotent, waiting for cycles in flight.

Timing is never asserted exactly: the loop is polled with :func:`wait_until`
and delays are tiny, so that the suite is fast and stays reliable on a
loaded machine. Every :class:`Planton` made through the ``make_planton``
fixture is stopped when its test ends.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from django_planton.core import Planton, Task
from django_planton.errors import PlantonError

from ..support import Log, wait_until
from .helpers import TINY, Counter, returning, task

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
