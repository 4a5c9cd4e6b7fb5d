"""Waking a waiting task: at once, only that task, right after a cycle in flight.

Timing is never asserted exactly: the loop is polled with :func:`wait_until`
and delays are tiny, so that the suite is fast and stays reliable on a
loaded machine. Every :class:`Planton` made through the ``make_planton``
fixture is stopped when its test ends.
"""

from __future__ import annotations

import time

from django_planton.core import Task

from ..support import wait_until
from .helpers import TINY, Counter, returning, task

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


# -- wake-ups during a cycle -------------------------------------------------------


def test_a_wake_up_during_a_cycle_reruns_it_only_if_it_came_after_the_cycle_read():
    from django_planton.core import WakeUps

    wakeups = WakeUps()
    # Woken before the cycle read the running executions: the cycle saw the
    # freed slot, so no cycle of its own follows.
    wakeups.defer("busy")
    time.sleep(0.001)
    wakeups.states_read(["busy"])
    assert not wakeups.take_deferred("busy")
    # Woken after the read: the cycle may have missed it, so the task runs again.
    wakeups.defer("busy")
    assert wakeups.take_deferred("busy")
    assert not wakeups.take_deferred("busy")  # taken once
    # A task whose running executions were never read reruns whenever woken.
    wakeups.defer("other")
    assert wakeups.take_deferred("other")


def test_a_wake_up_after_the_read_reruns_it_unless_the_read_saw_that_instruction_ended():
    from django_planton.core import WakeUps

    wakeups = WakeUps()
    wakeups.states_read(["busy"])
    wakeups.saw_running("busy", ["running-1", "dispatched-2"])
    # Its commit came before the read (the read did not see it running), its
    # wake-up after: the cycle refilled that slot, no cycle of its own.
    wakeups.defer("busy", ["ended-before-read"])
    assert not wakeups.take_deferred("busy")

    for ended in (["running-1"], ["dispatched-2"]):  # ended after the read: a new free slot
        wakeups.states_read(["busy"])
        wakeups.saw_running("busy", ["running-1", "dispatched-2"])
        wakeups.defer("busy", ["ended-before-read"])
        wakeups.defer("busy", ended)
        assert wakeups.take_deferred("busy"), ended


def test_a_wake_up_that_does_not_say_what_ended_always_reruns_the_task():
    from django_planton.core import WakeUps

    wakeups = WakeUps()
    wakeups.states_read(["busy"])
    wakeups.saw_running("busy", ["running-1"])
    wakeups.defer("busy", ["ended-before-read"])
    wakeups.defer("busy")  # another process's notification: which one ended is unknown
    assert wakeups.take_deferred("busy")
    # A read whose cycle never said what it saw (it failed) proves nothing either.
    wakeups.states_read(["busy"])
    wakeups.defer("busy", ["ended-before-read"])
    assert wakeups.take_deferred("busy")
