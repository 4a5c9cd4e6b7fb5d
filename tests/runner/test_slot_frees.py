"""A task that found every slot taken is due again as soon as one frees, without a write.

Every test here is transactional: cycles commit for real. No runner is
started, so no signal or notification wakes a task: what makes it due is
the cycle comparing the running count with the one its last attempt saw.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.db import connection

from django_planton.models import MaintenanceTask, MaintenanceTaskExecution
from django_planton.sql import now_sql, read_database_now

from ..support import Log
from .helpers import row

pytestmark = pytest.mark.django_db(transaction=True)

EVERY_SLOT_TAKEN = "every slot taken ({running} running): due when one frees"


def fresh_instructions():
    """A schedule that fills every free slot with new instructions; logs its contexts."""
    numbers = itertools.count(1)
    contexts = Log()

    def schedule(context):
        contexts.append(context)
        return [f"i{next(numbers)}" for _ in range(context.limit)]

    schedule.contexts = contexts
    return schedule


def make_due(name: str) -> None:
    MaintenanceTask.objects.filter(nid=name).update(next_attempt_at=None)


def an_hour_ahead(name: str) -> None:
    MaintenanceTask.objects.filter(nid=name).update(
        next_attempt_at=read_database_now("default") + timedelta(hours=1)
    )


def running_of(name: str) -> list[MaintenanceTaskExecution]:
    return list(MaintenanceTaskExecution.objects.for_task(name).running().order_by("pk"))


def end_behind_the_runners_back(execution: MaintenanceTaskExecution) -> None:
    """End an execution as another process would: a plain UPDATE, no signal, no ORM."""
    table = connection.ops.quote_name(MaintenanceTaskExecution._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET state = %s, ended_at = {now_sql(connection)}, "
            f"last_seen_at = {now_sql(connection)} WHERE id = %s",
            ["COMPLETED", execution.pk],
        )
        assert cursor.rowcount == 1


@pytest.fixture
def full_task(make_task, make_runner):
    """A task of concurrency 2 whose two slots are taken, and whose row knows it."""
    schedule = fresh_instructions()
    task = make_task("busy", schedule, concurrency=2, delay=0.0)
    runner = make_runner([task])
    [report] = runner.run_once()
    assert report.instructions == ("i1", "i2")
    # The next attempt finds every slot taken, and writes down how many ran.
    make_due("busy")
    report = runner.cycle_runner.run(task)
    assert report.instructions == ()
    assert report.errors == ()
    assert row("busy").saturated_active_count == 2
    assert len(schedule.contexts) == 1  # not called for a saturated task
    return task, runner, schedule


# -- every slot taken -------------------------------------------------------------------


def test_filling_every_slot_is_not_yet_saturation_when_a_delay_follows(make_task, make_runner):
    task = make_task("busy", fresh_instructions(), concurrency=2, delay=5.0)
    [report] = make_runner([task]).run_once()
    # The attempt that filled the slots had a slot to fill; its delay rules.
    assert row("busy").saturated_active_count is None
    assert report.waiting is None
    assert report.delay == pytest.approx(5.0)


def test_filling_every_slot_without_a_delay_is_saturation_at_once(make_task, make_runner):
    task = make_task("busy", fresh_instructions(), concurrency=2, delay=0.0)
    runner = make_runner([task])
    [report] = runner.run_once()
    # Due again at once, the task would only find every slot taken: the cycle
    # that filled them says so, and the task waits for a slot (or a poll).
    assert report.instructions == ("i1", "i2")
    assert report.waiting == EVERY_SLOT_TAKEN.format(running=2)
    assert 0 < report.delay <= runner.cycle_runner.poll_interval
    assert row("busy").saturated_active_count == 2


def test_a_full_task_waits_for_a_slot_and_dispatches_nothing(full_task):
    task, runner, schedule = full_task

    report = runner.cycle_runner.run(task)

    assert report.waiting == EVERY_SLOT_TAKEN.format(running=2)
    assert report.instructions == ()
    assert report.errors == ()
    assert 0 < report.delay <= runner.cycle_runner.poll_interval
    assert len(schedule.contexts) == 1
    assert len(running_of("busy")) == 2
    assert row("busy").saturated_active_count == 2


def test_the_cycle_after_the_one_that_filled_every_slot_says_every_slot_is_taken(
    make_task, make_runner
):
    # The operator's view of the same state must not depend on whether an
    # earlier attempt already recorded it: right after every slot was filled,
    # the next cycle reports "every slot taken" (and dispatches nothing).
    task = make_task("busy", fresh_instructions(), concurrency=2, delay=0.0)
    runner = make_runner([task])
    runner.run_once()
    make_due("busy")

    report = runner.cycle_runner.run(task)

    assert report.instructions == ()
    assert report.waiting == EVERY_SLOT_TAKEN.format(running=2)


# -- a slot frees ------------------------------------------------------------------------


def test_completing_in_this_process_makes_the_task_due_at_once(full_task):
    task, runner, schedule = full_task
    an_hour_ahead("busy")
    first, second = running_of("busy")

    assert first.complete()
    report = runner.cycle_runner.run(task)

    assert report.instructions == ("i3",)
    assert report.waiting == EVERY_SLOT_TAKEN.format(running=2)  # full again
    assert schedule.contexts[-1].limit == 1
    assert schedule.contexts[-1].active_task_instructions == (second.instruction,)
    assert len(running_of("busy")) == 2


def test_an_ending_by_another_process_makes_the_task_due_at_once(full_task):
    task, runner, _ = full_task
    an_hour_ahead("busy")
    first, _ = running_of("busy")

    end_behind_the_runners_back(first)
    report = runner.cycle_runner.run(task)

    assert report.instructions == ("i3",)
    assert report.waiting == EVERY_SLOT_TAKEN.format(running=2)  # full again


def test_a_failure_frees_the_slot_too(full_task):
    task, runner, _ = full_task
    an_hour_ahead("busy")
    first, _ = running_of("busy")

    first.fail("no")
    report = runner.cycle_runner.run(task)

    # The failed instruction is held back; the free slot goes to new work.
    assert report.instructions == ("i3",)


def test_a_termination_frees_the_slot_too(full_task):
    task, runner, _ = full_task
    an_hour_ahead("busy")
    first, _ = running_of("busy")

    MaintenanceTaskExecution.objects.filter(pk=first.pk).terminate("operator")
    report = runner.cycle_runner.run(task)

    assert report.instructions == ("i3",)


def test_the_count_is_cleared_after_a_cycle_with_free_slots(make_task, make_runner):
    schedule = fresh_instructions()
    task = make_task("busy", schedule, concurrency=2, delay=5.0)
    runner = make_runner([task])
    runner.run_once()
    make_due("busy")
    runner.cycle_runner.run(task)
    assert row("busy").saturated_active_count == 2
    an_hour_ahead("busy")
    for execution in running_of("busy"):
        execution.complete()

    report = runner.cycle_runner.run(task)

    assert report.instructions == ("i3", "i4")
    assert row("busy").saturated_active_count is None
    # Due again by its own back-off, not by the slot count: an hour ahead is
    # now honoured.
    an_hour_ahead("busy")
    running_of("busy")[0].complete()
    report = runner.cycle_runner.run(task)
    assert report.instructions == ()
    assert report.waiting.startswith("not due until ")


def test_without_an_ending_the_next_attempt_time_still_rules(full_task):
    task, runner, schedule = full_task
    an_hour_ahead("busy")

    report = runner.cycle_runner.run(task)

    assert report.waiting == EVERY_SLOT_TAKEN.format(running=2)
    assert len(schedule.contexts) == 1
    assert row("busy").saturated_active_count == 2


def test_a_paused_saturated_task_stays_not_attempted(full_task):
    task, runner, schedule = full_task
    MaintenanceTask.objects.filter(nid="busy").update(is_paused=True, next_attempt_at=None)
    for execution in running_of("busy"):
        execution.complete()

    report = runner.cycle_runner.run(task)

    assert report.waiting == "paused"
    assert report.instructions == ()
    assert len(schedule.contexts) == 1
    assert running_of("busy") == []

    MaintenanceTask.objects.filter(nid="busy").update(is_paused=False)
    assert runner.cycle_runner.run(task).instructions == ("i3", "i4")


def test_a_batch_mixes_freed_full_and_due_tasks(make_task, make_runner):
    schedules = {name: fresh_instructions() for name in ("freed", "still-full", "idle")}
    tasks = [
        make_task(name, schedules[name], concurrency=1, delay=0.0)
        for name in ("freed", "still-full")
    ]
    tasks.append(make_task("idle", schedules["idle"], concurrency=1, delay=0.0))
    runner = make_runner(tasks)
    runner.run_once()
    for name in ("freed", "still-full"):
        make_due(name)
    MaintenanceTask.objects.filter(nid="idle").update(next_attempt_at=None)
    running_of("idle")[0].complete()
    runner.cycle_runner.run_batch(tasks[:2])  # both find their slot taken
    for name in ("freed", "still-full"):
        assert row(name).saturated_active_count == 1
        an_hour_ahead(name)
    running_of("freed")[0].complete()

    freed, full, idle = runner.cycle_runner.run_batch(tasks)

    assert freed.instructions == ("i2",)
    assert full.waiting == EVERY_SLOT_TAKEN.format(running=1)
    assert idle.instructions == ("i2",)
