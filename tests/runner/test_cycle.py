"""The database cycle runner: one cycle, one transaction, signals after commit.

Every test here is transactional: cycles commit for real, signals are sent
from ``on_commit`` and background runners work on connections of their own.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_planton import signals
from django_planton.models import ExecutionState, MaintenanceTask, MaintenanceTaskExecution
from django_planton.runner import sync_tasks

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory
from .helpers import executions_of, instructions_of, row, waits

pytestmark = pytest.mark.django_db(transaction=True)


# -- sync ------------------------------------------------------------------------------


def test_run_once_creates_the_task_rows_with_the_declared_concurrency(make_task, make_runner):
    first = make_task("first", concurrency=3)
    second = make_task("second")
    assert not MaintenanceTask.objects.exists()

    make_runner([first, second]).run_once()

    assert dict(MaintenanceTask.objects.values_list("nid", "concurrency")) == {
        "first": 3,
        "second": 1,
    }


def test_sync_updates_the_declared_concurrency_and_keeps_the_operators_settings(make_task):
    MaintenanceTaskFactory(
        nid="steered", concurrency=1, maximum_concurrent_execution_count=9, is_paused=True
    )
    names = sync_tasks([make_task("steered", concurrency=4), make_task("new")])

    steered = row("steered")
    assert steered.concurrency == 4
    assert steered.maximum_concurrent_execution_count == 9
    assert steered.is_paused
    assert sorted(names.values()) == ["new", "steered"]
    assert names[steered.pk] == "steered"
    assert sync_tasks([]) == {}


def test_a_deleted_task_row_comes_back_at_the_next_cycle(make_task, make_runner):
    task = make_task("phoenix")
    runner = make_runner([task])
    runner.run_once()
    row("phoenix").delete()

    report = runner.cycle_runner.run(task)

    assert report.errors == ()
    assert row("phoenix").concurrency == 1


# -- a due cycle -------------------------------------------------------------------------


def test_a_due_cycle_dispatches_running_executions(
    make_task, make_runner, scripted_schedule, record_signal
):
    task = make_task("mail", scripted_schedule(["a", 7]), concurrency=2)
    dispatched = record_signal(signals.task_dispatched, sender=task)
    before = timezone.now()

    [report] = make_runner([task]).run_once()

    after = timezone.now()
    assert report.instructions == ("a", "7")
    assert report.errors == ()
    executions = executions_of("mail")
    assert [e.instruction for e in executions] == ["a", "7"]
    for execution in executions:
        assert execution.state == ExecutionState.RUNNING
        assert execution.ended_at is None
        assert execution.hostname == f"test-host:{os.getpid()}"  # the runner's identity
        assert before <= execution.started_at <= after
    assert row("mail").last_dispatched_at == executions[0].started_at

    assert [call["instruction"] for call in dispatched.items] == ["a", "7"]
    for call, execution in zip(dispatched.items, executions, strict=True):
        assert call["sender"] is task
        assert call["task_name"] == "mail"
        assert call["execution"].pk == execution.pk
        assert call["execution"].state == ExecutionState.RUNNING


def test_task_dispatched_is_sent_after_commit(
    make_task, make_runner, scripted_schedule, in_other_thread
):
    task = make_task("visible", scripted_schedule(["a"]))
    seen = []

    def receiver(sender, execution, **kwargs):
        # A worker on another connection must find the row the signal names.
        seen.append(
            (
                connection.in_atomic_block,
                in_other_thread(
                    lambda: MaintenanceTaskExecution.objects.filter(pk=execution.pk).exists()
                ),
            )
        )

    signals.task_dispatched.connect(receiver, sender=task, weak=False)
    try:
        make_runner([task]).run_once()
    finally:
        signals.task_dispatched.disconnect(receiver, sender=task)
    assert seen == [(False, True)]


def test_task_dispatched_goes_only_to_receivers_of_that_task(
    make_task, make_runner, scripted_schedule, record_signal
):
    mine = make_task("mine", scripted_schedule(["1"]))
    other = make_task("other")
    for_other = record_signal(signals.task_dispatched, sender=other)
    for_all = record_signal(signals.task_dispatched)

    make_runner([mine, other]).run_once()

    assert len(for_other) == 0
    assert [(call["sender"], call["instruction"]) for call in for_all.items] == [(mine, "1")]


def test_batch_dispatched_is_sent_once_per_batch_before_task_dispatched(
    make_task, make_runner, scripted_schedule
):
    task = make_task("batch", scripted_schedule(["a", "b", "c"]), concurrency=5)
    order = []

    def on_batch(sender, task_name, executions, **kwargs):
        order.append(("batch", sender, task_name, [e.instruction for e in executions]))

    def on_task(sender, instruction, **kwargs):
        order.append(("task", instruction))

    signals.batch_dispatched.connect(on_batch, sender=task, weak=False)
    signals.task_dispatched.connect(on_task, sender=task, weak=False)
    try:
        make_runner([task]).run_once()
    finally:
        signals.batch_dispatched.disconnect(on_batch, sender=task)
        signals.task_dispatched.disconnect(on_task, sender=task)

    # The batch first; its receivers then run at once (Threads): in any order.
    assert order[0] == ("batch", task, "batch", ["a", "b", "c"])
    assert sorted(order[1:]) == [("task", "a"), ("task", "b"), ("task", "c")]


def test_no_batch_signal_for_an_empty_attempt(make_task, make_runner, record_signal):
    task = make_task("empty")
    batches = record_signal(signals.batch_dispatched)
    make_runner([task]).run_once()
    assert len(batches) == 0
    assert not MaintenanceTaskExecution.objects.exists()


# -- attempt state on the row ------------------------------------------------------------


def test_attempt_number_and_next_attempt_are_stored_on_the_row(
    make_task, make_runner, scripted_schedule
):
    schedule = scripted_schedule(["work"])
    task = make_task(
        "cadence", schedule, concurrency=2, delay=lambda attempt_number: 10.0 * (attempt_number + 1)
    )
    runner = make_runner([task])

    def attempt():
        MaintenanceTask.objects.filter(nid="cadence").update(next_attempt_at=timezone.now())
        before = timezone.now()
        [report] = runner.run_once()
        return before, report, row("cadence")

    before, report, state = attempt()  # work found
    assert state.attempt_number == 0
    assert waits(state) == timedelta(seconds=10)
    assert state.last_attempted_at >= before
    assert report.delay == pytest.approx(10.0)

    before, report, state = attempt()  # empty
    assert state.attempt_number == 1
    assert waits(state) == timedelta(seconds=20)
    assert report.delay == pytest.approx(20.0)

    before, report, state = attempt()  # empty again: the delay grows
    assert state.attempt_number == 2
    assert waits(state) == timedelta(seconds=30)

    before, report, state = attempt()  # 40 s stored, but the runner looks again within max_wait
    assert state.attempt_number == 3
    assert waits(state) == timedelta(seconds=40)
    assert report.delay == pytest.approx(runner.cycle_runner.max_wait)

    assert [context.attempt_number for context in schedule.contexts.items] == [0, 0, 1, 2]


def test_attempt_number_goes_back_to_zero_after_work(make_task, make_runner, scripted_schedule):
    task = make_task("back", scripted_schedule([], [], ["x"]), concurrency=2)
    runner = make_runner([task])
    for expected in (1, 2, 0):
        MaintenanceTask.objects.filter(nid="back").update(next_attempt_at=None)
        runner.run_once()
        assert row("back").attempt_number == expected


def test_a_task_not_due_yet_is_not_attempted(make_task, make_runner, scripted_schedule):
    schedule = scripted_schedule(["never"])
    task = make_task("later", schedule)
    later = timezone.now() + timedelta(hours=1)
    MaintenanceTaskFactory(nid="later", next_attempt_at=later, attempt_number=3)

    [report] = make_runner([task]).run_once()

    assert len(schedule.contexts) == 0
    assert report.instructions == ()
    assert 0 < report.delay <= 30.0  # looks again within PLANTON_MAX_WAIT
    state = row("later")
    assert state.attempt_number == 3
    assert state.next_attempt_at == later
    assert state.last_attempted_at is None
    assert not MaintenanceTaskExecution.objects.exists()


def test_a_task_due_now_is_attempted(make_task, make_runner, scripted_schedule):
    schedule = scripted_schedule(["now"])
    task = make_task("due", schedule)
    MaintenanceTaskFactory(nid="due", next_attempt_at=timezone.now() - timedelta(seconds=1))
    make_runner([task]).run_once()
    assert instructions_of("due") == ["now"]


def test_a_paused_task_is_not_attempted(make_task, make_runner, scripted_schedule):
    schedule = scripted_schedule(["never"])
    task = make_task("paused", schedule)
    MaintenanceTaskFactory(nid="paused", is_paused=True)

    [report] = make_runner([task]).run_once()

    assert len(schedule.contexts) == 0
    assert report.delay > 0
    assert not MaintenanceTaskExecution.objects.exists()
    assert row("paused").last_attempted_at is None

    MaintenanceTask.objects.filter(nid="paused").update(is_paused=False)
    make_runner([task]).run_once()
    assert instructions_of("paused") == ["never"]


def test_the_concurrency_override_replaces_the_declared_concurrency(
    make_task, make_runner, scripted_schedule
):
    schedule = scripted_schedule(["a", "b", "c", "d"])
    task = make_task("override", schedule, concurrency=1)
    MaintenanceTaskFactory(nid="override", maximum_concurrent_execution_count=4)

    [report] = make_runner([task]).run_once()

    [context] = schedule.contexts.items
    assert context.concurrency == 4
    assert context.limit == 4
    assert report.errors == ()
    assert instructions_of("override") == ["a", "b", "c", "d"]


def test_the_limit_counts_running_executions_but_not_completed_ones(
    make_task, make_runner, scripted_schedule
):
    schedule = scripted_schedule(["new"])
    task = make_task("active", schedule, concurrency=3)
    state = MaintenanceTaskFactory(nid="active", concurrency=3)
    MaintenanceTaskExecutionFactory(maintenance_task=state, instruction="running")
    MaintenanceTaskExecutionFactory(maintenance_task=state, instruction="done", completed=True)
    MaintenanceTaskExecutionFactory(maintenance_task=state, instruction="gone", terminated=True)
    MaintenanceTaskExecutionFactory(instruction="someone-else's")

    make_runner([task]).run_once()

    [context] = schedule.contexts.items
    assert context.active_task_instructions == ("running",)
    assert context.limit == 2
    assert context.concurrency == 3


def test_a_saturated_task_does_not_call_schedule(make_task, make_runner, scripted_schedule):
    schedule = scripted_schedule(["more"])
    task = make_task("full", schedule, concurrency=2)
    state = MaintenanceTaskFactory(nid="full", concurrency=2)
    MaintenanceTaskExecutionFactory.create_batch(2, maintenance_task=state)

    [report] = make_runner([task]).run_once()

    assert len(schedule.contexts) == 0
    assert report.errors == ()
    assert row("full").attempt_number == 0
    assert MaintenanceTaskExecution.objects.count() == 2


def test_the_hostname_defaults_to_the_setting_then_the_machine(
    make_task, make_runner, scripted_schedule, settings
):
    task = make_task("hosts", scripted_schedule(["a"], ["b"]), concurrency=2)
    settings.PLANTON_HOSTNAME = "box-1"
    make_runner([task], hostname=None).run_once()
    del settings.PLANTON_HOSTNAME
    MaintenanceTask.objects.filter(nid="hosts").update(next_attempt_at=None)
    make_runner([task], hostname=None).run_once()
    pid = os.getpid()
    assert [e.hostname for e in executions_of("hosts")] == [
        f"box-1:{pid}",
        f"{socket.gethostname()}:{pid}",
    ]


def test_a_raising_calculate_delay_falls_back_to_one_second(
    make_task, make_runner, scripted_schedule
):
    def broken_delay(attempt_number):
        raise ArithmeticError("no delay today")

    task = make_task("delay", scripted_schedule(["a"]), delay=broken_delay)
    before = timezone.now()
    [report] = make_runner([task]).run_once()
    assert report.instructions == ("a",)
    assert [type(error) for error in report.errors] == [ArithmeticError]
    assert report.delay == 1.0
    state = row("delay")
    assert state.last_attempted_at >= before
    assert waits(state) == timedelta(seconds=1)


def test_a_raising_calculate_limit_backs_off_like_a_failed_attempt(
    make_task, make_runner, scripted_schedule
):
    def broken_limit(concurrency, active):
        raise ValueError("limit broke")

    schedule = scripted_schedule(["a"])
    task = make_task(
        "limit",
        schedule,
        delay=lambda attempt_number: 0.0 if attempt_number == 0 else 5.0,
        calculate_limit=broken_limit,
    )
    before = timezone.now()
    [report] = make_runner([task]).run_once()

    assert [type(error) for error in report.errors] == [ValueError]
    assert len(schedule.contexts) == 0
    state = row("limit")
    assert state.last_error.split("\n")[0] == "ValueError: limit broke"
    assert state.attempt_number == 1
    assert state.next_attempt_at >= before + timedelta(seconds=4)
    assert report.delay > 0


def test_a_saturated_task_looks_again_no_sooner_than_the_poll_interval(make_task, make_runner):
    task = make_task("saturated", concurrency=1, delay=0.0)
    state = MaintenanceTaskFactory(nid="saturated")
    MaintenanceTaskExecutionFactory(maintenance_task=state)
    runner = make_runner([task])

    report = runner.cycle_runner.run(task)

    assert report.errors == ()
    # A freed slot wakes the task; until then there is nothing to do.
    assert report.delay >= runner.cycle_runner.poll_interval
