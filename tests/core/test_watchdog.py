"""The cycle watchdog: one warning for a cycle that runs too long, one when it ends."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from django_planton.core import CycleWatchdog, Planton, Task

from .helpers import tiny_delay


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_cycle_past_the_threshold_is_reported_once_and_again_when_it_ends(caplog):
    watchdog = CycleWatchdog(0.01)
    with watchdog.watch(["slow_task"]):
        time.sleep(0.03)
        assert [cycle.names for cycle in watchdog.check()] == [("slow_task",)]
        assert watchdog.check() == []  # once per cycle
    messages = warnings(caplog)
    assert len(messages) == 2
    assert messages[0].startswith("Cycle of task slow_task has run for ")
    assert "PLANTON_SLOW_CYCLE_WARNING" in messages[0]
    assert messages[1].startswith("Cycle of task slow_task ended after ")


def test_a_quick_cycle_says_nothing(caplog):
    watchdog = CycleWatchdog(60.0)
    with watchdog.watch(["quick"]):
        assert watchdog.check() == []
    assert warnings(caplog) == []


def test_a_batch_is_named_with_its_tasks(caplog):
    watchdog = CycleWatchdog(0.01)
    names = [f"idle-{n}" for n in range(7)]
    with watchdog.watch(names):
        time.sleep(0.03)
        watchdog.check()
    assert warnings(caplog)[0].startswith(
        "Cycle of tasks idle-0, idle-1, idle-2, idle-3, idle-4 and 2 more has run for "
    )


def test_without_a_threshold_it_only_tracks(caplog):
    watchdog = CycleWatchdog(None)
    with watchdog.watch(["a"]):
        time.sleep(0.01)
        assert watchdog.check() == []
        assert [cycle.names for cycle in watchdog.in_flight()] == [("a",)]
    assert watchdog.in_flight() == []
    assert warnings(caplog) == []


@pytest.mark.parametrize("threshold", [0, -1.0])
def test_a_threshold_must_be_positive(threshold):
    with pytest.raises(ValueError, match="positive number of seconds"):
        CycleWatchdog(threshold)


def test_the_loop_warns_about_a_blocked_schedule_and_lists_it_in_flight(caplog, gate):
    entered = threading.Event()

    def blocked(context):
        entered.set()
        gate.wait(10)
        return []

    planton = Planton(
        [Task("stuck", blocked, calculate_delay=tiny_delay)],
        get_active_task_instructions=lambda name: [],
        slow_cycle_warning=0.05,
    )
    planton.start()
    try:
        assert entered.wait(5)
        deadline = time.monotonic() + 5
        while not warnings(caplog) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert warnings(caplog)[0].startswith("Cycle of task stuck has run for ")
        assert [cycle.names for cycle in planton.cycles_in_flight()] == [("stuck",)]
        assert planton.stop(timeout=0.1) is False  # still blocked: given up on
        assert [cycle.names for cycle in planton.cycles_in_flight()] == [("stuck",)]
    finally:
        gate.set()
        planton.stop(timeout=5)
    assert planton.cycles_in_flight() == []
    assert any(m.startswith("Cycle of task stuck ended after ") for m in warnings(caplog))
