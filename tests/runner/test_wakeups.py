"""Which wake-ups a runner acts on.

A freed slot matters to a task whose last attempt found work (or found every
slot taken). A task backing off after empty attempts ignores wake-ups, so a
stream of ended executions costs it no cycles.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection

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


# -- wake_on_change: a trigger on the user's own table ----------------------------------


def apply(operation, *, backwards: bool = False) -> None:
    from django.apps import apps

    with connection.schema_editor() as editor:
        (operation.reverse_code if backwards else operation.code)(apps, editor)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a trigger and NOTIFY: PostgreSQL only"
)
@pytest.mark.parametrize("name", ["watcher", "it's a watcher"])
def test_a_watched_table_wakes_its_backing_off_task_at_once(
    make_task, make_runner, record_signal, wait_until, name
):
    from django.contrib.auth.models import Group

    from django_planton import signals
    from django_planton.notify import wake_on_change

    dispatched_names: list[str] = []

    def new_groups(context):
        return [
            group
            for group in Group.objects.order_by("name").values_list("name", flat=True)
            if group not in dispatched_names
        ][: context.limit]

    task = make_task(name, new_groups, concurrency=5, delay=60.0)
    dispatched = record_signal(signals.task_dispatched, sender=task)
    operation = wake_on_change("auth.Group", name, events=["INSERT"])
    apply(operation)
    try:
        runner = make_runner([task], start=True)
        assert runner.listener is not None
        assert runner.listener.listening.wait(5)
        # The first attempt finds nothing: the task backs off for a minute.
        assert wait_until(lambda: MaintenanceTask.objects.get(nid=name).attempt_number == 1)

        Group.objects.create(name="first")

        assert wait_until(lambda: len(dispatched) == 1, timeout=5)
        dispatched_names.append(dispatched[0]["instruction"])
        assert dispatched_names == ["first"]
    finally:
        apply(operation, backwards=True)

    # Without the trigger, a new row waits for the task's delay (a minute).
    Group.objects.create(name="second")
    time.sleep(1.0)
    assert len(dispatched) == 1


def test_wake_on_change_does_nothing_without_postgresql_and_checks_its_events():
    from django_planton.notify import wake_on_change

    with pytest.raises(ValueError, match="events"):
        wake_on_change("auth.Group", "watcher", events=["TRUNCATE"])
    with pytest.raises(ValueError, match="events"):
        wake_on_change("auth.Group", "watcher", events=[])
    if connection.vendor != "postgresql":
        apply(wake_on_change("auth.Group", "watcher"))  # no error, no trigger
        apply(wake_on_change("auth.Group", "watcher"), backwards=True)


def test_a_forced_wake_up_attempts_a_backing_off_task(make_task, make_runner):
    calls = []

    def finds_nothing(context):
        calls.append(context.attempt_number)
        return []

    task = make_task("watched", finds_nothing, delay=30.0)
    runner = make_runner([task])
    runner.run_once()
    assert runner.cycle_runner.run(task).delay > 25  # backing off: not attempted
    assert calls == [0]

    assert runner.cycle_runner.wake("watched", force=True) is True
    runner.cycle_runner.run(task)
    assert calls == [0, 1]  # attempted at once, and its back-off counts on
    runner.cycle_runner.run(task)
    assert calls == [0, 1]  # one wake-up, one attempt
