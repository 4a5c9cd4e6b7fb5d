"""Which wake-ups a runner acts on.

A freed slot matters to a task whose last attempt found work (or found every
slot taken). A task backing off after empty attempts ignores wake-ups, so a
stream of ended executions costs it no cycles.
"""

from __future__ import annotations

import time

import pytest

from django_planton.models import MaintenanceTask

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_task_that_found_work_accepts_a_wake_up(make_task, make_runner, scripted_schedule):
    task = make_task("busy", scripted_schedule(["a"]), concurrency=5, delay=30.0)
    runner = make_runner([task])
    runner.run_once()
    assert MaintenanceTask.objects.get(nid="busy").attempt_number == 0
    assert runner.cycle_runner.wake("busy") is True


def test_a_backing_off_task_ignores_wake_ups(make_task, make_runner, scripted_schedule):
    calls = []

    def finds_nothing(context):
        calls.append(context.attempt_number)
        return []

    task = make_task("idle", finds_nothing, delay=30.0)
    runner = make_runner([task])
    runner.run_once()
    assert calls == [0]
    assert runner.cycle_runner.wake("idle") is False

    # Not due for 30 s, and a refused wake-up does not make the next cycle run early.
    report = runner.cycle_runner.run(task)
    assert calls == [0]
    assert report.delay > 20


def test_ending_an_execution_in_process_wakes_a_task_once(
    make_task, make_runner, scripted_schedule, wait_until
):
    """One ended execution, one extra cycle: not one per wake-up path (signal and NOTIFY)."""
    task = make_task("refill", scripted_schedule(["a"], ["b"]), concurrency=1, delay=30.0)
    runner = make_runner([task])
    cycles = []
    run_batch = runner.cycle_runner.run_batch

    def counted(*args, **kwargs):
        reports = run_batch(*args, **kwargs)
        cycles.extend(reports)
        return reports

    runner.cycle_runner.run_batch = counted  # every attempt, alone or in a batch, goes through it
    runner.start()
    assert wait_until(lambda: len(cycles) == 1)
    if runner.listener is not None:
        assert runner.listener.listening.wait(5)

    MaintenanceTask.objects.get(nid="refill").executions.get().complete()

    assert wait_until(lambda: len(cycles) == 2)
    assert cycles[1].instructions == ("b",)
    time.sleep(0.5)  # a second wake-up for the same end would show up by now
    assert len(cycles) == 2
