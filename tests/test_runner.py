"""The database cycle runner and the Runner: one cycle, one transaction, signals after commit.

Every test here is transactional: cycles commit for real, signals are sent
from ``on_commit`` and background runners work on connections of their own.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import OperationalError, connection, connections, transaction
from django.test import override_settings
from django.utils import timezone

from django_planton import UnexpectedTaskInstructionsError, signals
from django_planton.models import ExecutionState, MaintenanceTask, MaintenanceTaskExecution
from django_planton.runner import DatabaseCycleRunner, sync_tasks

from .factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory

pytestmark = pytest.mark.django_db(transaction=True)


def row(name: str) -> MaintenanceTask:
    return MaintenanceTask.objects.get(nid=name)


def executions_of(name: str) -> list[MaintenanceTaskExecution]:
    return list(MaintenanceTaskExecution.objects.for_task(name).order_by("pk"))


def instructions_of(name: str) -> list[str]:
    return [execution.instruction for execution in executions_of(name)]


def waits(state: MaintenanceTask) -> timedelta:
    """How long after its last attempt the row says the task is next due."""
    return state.next_attempt_at - state.last_attempted_at


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
        assert execution.hostname == "test-host"
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

    assert order == [
        ("batch", task, "batch", ["a", "b", "c"]),
        ("task", "a"),
        ("task", "b"),
        ("task", "c"),
    ]


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
    assert [e.hostname for e in executions_of("hosts")] == ["box-1", socket.gethostname()]


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
    assert state.last_error == "ValueError: limit broke"
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


# -- failed cycles roll back --------------------------------------------------------------


def test_a_raising_schedule_rolls_back_its_writes_and_backs_off(
    make_task, make_runner, record_signal
):
    bystander = MaintenanceTaskFactory(nid="bystander")
    problem = ValueError("no more rows")

    def schedule(context):
        MaintenanceTask.objects.filter(nid="bystander").update(is_paused=True)
        Group.objects.create(name="claimed-inside-the-cycle")
        raise problem

    task = make_task("fails", schedule, delay=lambda attempt_number: 5.0 * attempt_number)
    failed = record_signal(signals.schedule_failed)
    dispatched = record_signal(signals.task_dispatched)
    before = timezone.now()

    [report] = make_runner([task]).run_once()

    assert report.errors == (problem,)
    assert report.instructions == ()
    # Everything the schedule wrote inside the cycle is gone.
    bystander.refresh_from_db()
    assert not bystander.is_paused
    assert not Group.objects.filter(name="claimed-inside-the-cycle").exists()
    assert not MaintenanceTaskExecution.objects.exists()
    # The attempt itself is recorded, so the task backs off.
    state = row("fails")
    assert state.attempt_number == 1
    assert waits(state) == timedelta(seconds=5)
    assert state.last_attempted_at >= before
    assert state.last_error == "ValueError: no more rows"
    assert state.last_dispatched_at is None
    # schedule_failed carries the error itself.
    assert [(call["sender"], call["task_name"], call["error"]) for call in failed.items] == [
        (task, "fails", problem)
    ]
    assert len(dispatched) == 0


def test_failures_accumulate_and_a_success_clears_the_error(
    make_task, make_runner, scripted_schedule
):
    outcomes = iter([RuntimeError("one"), RuntimeError("two"), ["ok"]])

    def schedule(context):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    task = make_task("flaky", schedule)
    runner = make_runner([task])
    for attempt_number, message in ((1, "RuntimeError: one"), (2, "RuntimeError: two")):
        MaintenanceTask.objects.filter(nid="flaky").update(next_attempt_at=None)
        runner.run_once()
        assert (row("flaky").attempt_number, row("flaky").last_error) == (attempt_number, message)

    MaintenanceTask.objects.filter(nid="flaky").update(next_attempt_at=None)
    runner.run_once()
    assert (row("flaky").attempt_number, row("flaky").last_error) == (0, "")
    assert instructions_of("flaky") == ["ok"]


def test_a_failing_schedule_failed_receiver_is_contained(make_task, make_runner, caplog):
    def schedule(context):
        raise KeyError("x")

    def broken(sender, **kwargs):
        raise RuntimeError("receiver broke")

    task = make_task("contained", schedule)
    signals.schedule_failed.connect(broken, weak=False)
    try:
        [report] = make_runner([task]).run_once()
    finally:
        signals.schedule_failed.disconnect(broken)
    assert [type(error) for error in report.errors] == [KeyError]
    assert "receiver broke" in caplog.text
    assert row("contained").attempt_number == 1


INVALID_RESULTS = {
    "too many": (2, ["a", "b"]),  # one slot of two is taken
    "not a list": (3, "abc"),
    "None": (3, None),
    "a float": (3, ["a", 1.5]),
    "a bool": (3, [True]),
    "duplicate": (3, ["a", "a"]),
    "duplicate after normalising": (3, [7, "7"]),
    "already active": (3, ["fine", "active"]),
    "too long": (3, ["fine", "x" * 9]),
    "NUL character": (3, ["fine", "nul\x00here"]),
}


def test_an_invalid_batch_is_rolled_back_and_reported(
    make_task, make_runner, record_signal, settings
):
    # One test for every case (each with a task of its own) rather than one test
    # per case: a transactional test costs a database flush.
    settings.PLANTON_MAX_INSTRUCTION_LENGTH = 8
    dispatched = record_signal(signals.task_dispatched)
    for number, (case, (concurrency, result)) in enumerate(INVALID_RESULTS.items()):
        name = f"invalid-{number}"

        def schedule(context, result=result):
            Group.objects.create(name="claimed-inside-the-cycle")
            return result

        task = make_task(name, schedule, concurrency=concurrency, delay=3.0)
        state = MaintenanceTaskFactory(nid=name, concurrency=concurrency)
        MaintenanceTaskExecutionFactory(maintenance_task=state, instruction="active")
        failed = record_signal(signals.schedule_failed, sender=task)
        before = timezone.now()

        [report] = make_runner([task]).run_once()

        [error] = report.errors
        assert isinstance(error, UnexpectedTaskInstructionsError), case
        assert error.task_name == name, case
        assert [call["error"] for call in failed.items] == [error], case
        assert instructions_of(name) == ["active"], case
        assert not Group.objects.exists(), case
        state.refresh_from_db()
        assert state.attempt_number == 1, case
        assert state.last_attempted_at >= before, case
        assert waits(state) == timedelta(seconds=3), case
        assert state.last_error.startswith("UnexpectedTaskInstructionsError: "), case
    assert len(dispatched) == 0


def test_an_instruction_of_the_maximum_length_is_fine(
    make_task, make_runner, scripted_schedule, settings
):
    settings.PLANTON_MAX_INSTRUCTION_LENGTH = 8
    task = make_task("edge", scripted_schedule(["x" * 8]))
    [report] = make_runner([task]).run_once()
    assert report.errors == ()
    assert instructions_of("edge") == ["x" * 8]


# -- receivers that fail ----------------------------------------------------------------


def test_a_raising_task_dispatched_receiver_fails_only_its_execution(
    make_task, make_runner, scripted_schedule, record_signal, caplog
):
    first = make_task("first", scripted_schedule(["bad", "good"]), concurrency=2)
    second = make_task("second", scripted_schedule(["later"]))
    problem = RuntimeError("worker queue is down")

    def broken(sender, instruction, **kwargs):
        if instruction == "bad":
            raise problem

    signals.task_dispatched.connect(broken, weak=False)
    try:
        after_broken = record_signal(signals.task_dispatched)
        reports = make_runner([first, second]).run_once()
    finally:
        signals.task_dispatched.disconnect(broken)

    # The other receivers ran for every instruction; the runner went on.
    assert [call["instruction"] for call in after_broken.items] == ["bad", "good", "later"]
    assert [report.instructions for report in reports] == [("bad", "good"), ("later",)]
    bad, good = executions_of("first")
    assert bad.state == ExecutionState.COMPLETED
    assert bad.ended_at is not None
    assert bad.error["type"] == "RuntimeError"
    assert bad.error["message"] == "worker queue is down"
    assert good.is_running
    assert good.error is None
    assert executions_of("second")[0].is_running
    assert "worker queue is down" in caplog.text


def test_a_raising_batch_dispatched_receiver_does_not_stop_task_dispatched(
    make_task, make_runner, scripted_schedule, record_signal
):
    task = make_task("batchy", scripted_schedule(["a"]))

    def broken(sender, **kwargs):
        raise RuntimeError("batch receiver broke")

    signals.batch_dispatched.connect(broken, weak=False)
    try:
        dispatched = record_signal(signals.task_dispatched)
        make_runner([task]).run_once()
    finally:
        signals.batch_dispatched.disconnect(broken)
    assert [call["instruction"] for call in dispatched.items] == ["a"]
    assert executions_of("batchy")[0].is_running


# -- housekeeping ------------------------------------------------------------------------


def test_housekeeping_terminates_overdue_executions(make_task, make_runner, record_signal):
    task = make_task("slow")
    state = MaintenanceTaskFactory(nid="slow", maximum_execution_duration=timedelta(minutes=1))
    overdue = MaintenanceTaskExecutionFactory(
        maintenance_task=state, started_at=timezone.now() - timedelta(minutes=2)
    )
    fresh = MaintenanceTaskExecutionFactory(maintenance_task=state)
    terminated = record_signal(signals.execution_terminated)

    make_runner([task]).run_once()

    overdue.refresh_from_db()
    assert overdue.state == ExecutionState.COMPLETED
    assert overdue.ended_at is not None
    assert overdue.terminated_at == overdue.ended_at
    assert overdue.terminated_reason == "maximum execution duration exceeded"
    fresh.refresh_from_db()
    assert fresh.is_running
    assert [(call["execution"].pk, call["reason"]) for call in terminated.items] == [
        (overdue.pk, "maximum execution duration exceeded")
    ]
    assert terminated[0]["execution"].maintenance_task.nid == "slow"


def test_pruning_deletes_old_completed_executions_only(make_runner):
    now = timezone.now()
    state = MaintenanceTaskFactory(maximum_execution_duration=timedelta(days=1))
    old_done = MaintenanceTaskExecutionFactory(
        maintenance_task=state, started_at=now - timedelta(hours=3), completed=True
    )
    old_failed = MaintenanceTaskExecutionFactory(
        maintenance_task=state, started_at=now - timedelta(hours=3), failed=True
    )
    recent_done = MaintenanceTaskExecutionFactory(
        maintenance_task=state, started_at=now - timedelta(minutes=10), completed=True
    )
    old_running = MaintenanceTaskExecutionFactory(
        maintenance_task=state, started_at=now - timedelta(hours=3)
    )
    runner = make_runner([])

    with override_settings(PLANTON_KEEP_COMPLETED_EXECUTIONS=timedelta(hours=1)):
        assert runner.prune() == 2

    remaining = set(MaintenanceTaskExecution.objects.values_list("pk", flat=True))
    assert remaining == {recent_done.pk, old_running.pk}
    assert old_done.pk not in remaining
    assert old_failed.pk not in remaining


def test_pruning_is_part_of_housekeeping_and_can_be_turned_off(make_runner):
    state = MaintenanceTaskFactory()
    old = MaintenanceTaskExecutionFactory(
        maintenance_task=state, started_at=timezone.now() - timedelta(days=30), completed=True
    )
    runner = make_runner([])

    with override_settings(PLANTON_KEEP_COMPLETED_EXECUTIONS=None):
        assert runner.prune() == 0
        runner.housekeep()
    assert MaintenanceTaskExecution.objects.filter(pk=old.pk).exists()

    with override_settings(PLANTON_KEEP_COMPLETED_EXECUTIONS=timedelta(days=7)):
        runner.housekeep(prune=False)
        assert MaintenanceTaskExecution.objects.filter(pk=old.pk).exists()
        runner.run_once()
    assert not MaintenanceTaskExecution.objects.filter(pk=old.pk).exists()


# -- lost connections ----------------------------------------------------------------------


def test_a_database_error_is_reported_and_the_next_cycle_works(
    make_task, make_runner, scripted_schedule
):
    task = make_task("resilient", scripted_schedule(["a"]))
    runner = make_runner([task])
    sync_tasks([task])
    failures = []

    def fail_once(execute, sql, params, many, context):
        if not failures and "maintenance_task" in sql:
            failures.append(sql)
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connections["default"].execute_wrapper(fail_once):
        report = runner.cycle_runner.run(task)
    assert len(failures) == 1
    [error] = report.errors
    assert isinstance(error, OperationalError)
    assert report.instructions == ()
    assert report.delay == pytest.approx(runner.cycle_runner.poll_interval)
    assert not MaintenanceTaskExecution.objects.exists()

    report = runner.cycle_runner.run(task)
    assert report.errors == ()
    assert report.instructions == ("a",)
    assert instructions_of("resilient") == ["a"]


def test_repeated_database_errors_back_off_up_to_max_wait(make_task):
    task = make_task("down")
    sync_tasks([task])
    cycle_runner = DatabaseCycleRunner(hostname="h", poll_interval=0.5, max_wait=3.0)

    def always_fail(execute, sql, params, many, context):
        raise OperationalError("database is down")

    with connections["default"].execute_wrapper(always_fail):
        delays = [cycle_runner.run(task).delay for _ in range(5)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    report = cycle_runner.run(task)
    assert report.errors == ()
    assert row("down").last_attempted_at is not None


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="ends a server process: PostgreSQL only"
)
def test_a_connection_killed_by_the_server_is_replaced(make_task, make_runner, scripted_schedule):
    task = make_task("killed", scripted_schedule(["a"], ["b"]), concurrency=2)
    runner = make_runner([task])
    sync_tasks([task])
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    killer = threading.Thread(target=_terminate_backend, args=(pid,))
    killer.start()
    killer.join(10)

    report = runner.cycle_runner.run(task)

    [error] = report.errors
    assert isinstance(error, OperationalError)
    report = runner.cycle_runner.run(task)
    assert report.errors == ()
    assert report.instructions == ("a",)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def _terminate_backend(pid: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            assert cursor.fetchone()[0] is True
            # Wait until the server has really ended it.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
                if cursor.fetchone()[0] == 0:
                    break
                time.sleep(0.01)
    finally:
        connection.close()


# -- the runner in the background -----------------------------------------------------------


def test_start_dispatches_in_the_background_and_stop_ends_cleanly(
    make_task, make_runner, scripted_schedule, record_signal, wait_until
):
    task = make_task("background", scripted_schedule(["a"], ["b"], ["c"]), concurrency=3)
    dispatched = record_signal(signals.task_dispatched, sender=task)
    receivers_before = list(signals.executions_ended.receivers)

    runner = make_runner([task], start=True, housekeeping_interval=0.05)

    assert wait_until(lambda: len(dispatched) == 3)
    assert sorted(call["instruction"] for call in dispatched.items) == ["a", "b", "c"]
    assert runner.planton.is_running
    assert runner.stop(timeout=5) is True
    assert not runner.planton.is_running
    assert signals.executions_ended.receivers == receivers_before
    assert wait_until(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("planton-")]
    ), [t.name for t in threading.enumerate()]
    assert sorted(instructions_of("background")) == ["a", "b", "c"]


def test_the_background_runner_sends_signals_from_its_worker_threads(
    make_task, make_runner, scripted_schedule, wait_until
):
    task = make_task("threads", scripted_schedule(["a"]))
    threads = []

    def receiver(sender, **kwargs):
        threads.append(threading.current_thread().name)

    signals.task_dispatched.connect(receiver, sender=task, weak=False)
    try:
        make_runner([task], start=True)
        assert wait_until(lambda: threads)
    finally:
        signals.task_dispatched.disconnect(receiver, sender=task)
    assert threads[0].startswith("planton-worker")


def test_the_background_runner_terminates_and_prunes(
    make_task, make_runner, record_signal, wait_until
):
    task = make_task("slow")
    state = MaintenanceTaskFactory(nid="slow", maximum_execution_duration=timedelta(seconds=1))
    overdue = MaintenanceTaskExecutionFactory(
        maintenance_task=state, started_at=timezone.now() - timedelta(seconds=5)
    )
    old = MaintenanceTaskExecutionFactory(
        maintenance_task=state, started_at=timezone.now() - timedelta(days=30), completed=True
    )
    terminated = record_signal(signals.execution_terminated)

    make_runner([task], start=True, housekeeping_interval=0.05)

    assert wait_until(lambda: len(terminated) == 1)
    overdue.refresh_from_db()
    assert overdue.terminated_reason == "maximum execution duration exceeded"
    # The first round of housekeeping also prunes (then once a minute).
    assert wait_until(lambda: not MaintenanceTaskExecution.objects.filter(pk=old.pk).exists())


def test_a_freed_slot_wakes_the_task_at_once(
    make_task, make_runner, scripted_schedule, record_signal, wait_until
):
    # After work the task waits 30 s; only the wake-up can refill the slot sooner.
    task = make_task("wake", scripted_schedule(["a"], ["b"], ["c"]), concurrency=1, delay=30.0)
    dispatched = record_signal(signals.task_dispatched, sender=task)
    make_runner([task], start=True)
    assert wait_until(lambda: len(dispatched) == 1)
    assert instructions_of("wake") == ["a"]

    started = time.monotonic()
    assert MaintenanceTaskExecution.objects.get(instruction="a").complete()

    assert wait_until(lambda: len(dispatched) == 2, timeout=5)
    assert time.monotonic() - started < 5
    assert [call["instruction"] for call in dispatched.items] == ["a", "b"]

    dispatched[1]["execution"].fail("gave up")
    assert wait_until(lambda: len(dispatched) == 3, timeout=5)
    assert [e.instruction for e in MaintenanceTaskExecution.objects.running()] == ["c"]


def test_a_task_row_deleted_in_the_admin_is_recreated_and_still_woken(
    make_task, make_runner, scripted_schedule, record_signal, settings, wait_until
):
    settings.PLANTON_MAX_WAIT = 0.1  # re-read the row often, so the deletion is seen soon
    task = make_task("phoenix", scripted_schedule(["a"], ["b"], ["c"]), concurrency=1, delay=30.0)
    dispatched = record_signal(signals.task_dispatched, sender=task)
    make_runner([task], start=True)
    assert wait_until(lambda: len(dispatched) == 1)
    old_pk = row("phoenix").pk

    MaintenanceTask.objects.filter(nid="phoenix").delete()  # its executions go with it

    # The runner brings the row back (a new id), due at once: "b" is dispatched.
    assert wait_until(lambda: len(dispatched) == 2)
    assert row("phoenix").pk != old_pk
    # Ending "b" wakes the task under its new id; without the wake-up it would wait 30 s.
    assert MaintenanceTaskExecution.objects.get(instruction="b").complete()
    assert wait_until(lambda: len(dispatched) == 3, timeout=5)
    assert instructions_of("phoenix") == ["b", "c"]


def test_an_idle_task_is_not_woken(make_task, make_runner, scripted_schedule, wait_until):
    idle_schedule = scripted_schedule()
    idle = make_task("idle", idle_schedule, delay=30.0)
    busy = make_task("busy", scripted_schedule(["a"], ["b"]), delay=30.0)
    runner = make_runner([idle, busy], start=True)
    cycles = []
    original_run_batch = runner.cycle_runner.run_batch

    def logged_run_batch(tasks, *args, **kwargs):
        started = time.monotonic()
        reports = original_run_batch(tasks, *args, **kwargs)
        cycles.extend((task.name, started) for task in tasks)
        return reports

    # Every attempt, alone or in a batch, goes through run_batch.
    runner.cycle_runner.run_batch = logged_run_batch
    assert wait_until(lambda: len(idle_schedule.contexts) == 1 and instructions_of("busy"))
    assert wait_until(lambda: row("idle").attempt_number == 1)
    idle_row = row("idle")
    idle_execution = MaintenanceTaskExecutionFactory(maintenance_task=idle_row)

    woken_at = time.monotonic()
    # One statement ends an execution of each task: both tasks are woken.
    ended = MaintenanceTaskExecution.objects.filter(
        pk__in=[idle_execution.pk, executions_of("busy")[0].pk]
    ).complete()
    assert ended == 2

    assert wait_until(lambda: instructions_of("busy") == ["a", "b"])
    # Give the idle task's woken cycle time to run (it finds the task not due).
    wait_until(lambda: any(n == "idle" and t >= woken_at for n, t in cycles), timeout=2)
    assert len(idle_schedule.contexts) == 1
    assert row("idle").attempt_number == 1
    assert row("idle").last_attempted_at == idle_row.last_attempted_at


# -- two runners, one database -------------------------------------------------------------


def test_two_runners_share_one_concurrency_on_any_database(
    make_task, make_runner, make_workers, running_sampler, most_at_once, settings, wait_until
):
    # The PostgreSQL module runs this at scale; here it is small enough for SQLite,
    # whose runners take turns through the database's write lock.
    settings.PLANTON_POLL_INTERVAL = 0.01
    jobs, concurrency = 40, 3
    Group.objects.bulk_create([Group(name=f"job-{n:03d}") for n in range(jobs)])

    def claim(context):
        pending = Group.objects.filter(name__startswith="job-").exclude(
            pk__in=[int(i) for i in context.active_task_instructions]
        )
        return list(pending.order_by("pk").values_list("pk", flat=True)[: context.limit])

    def work(execution_pk: int, group_pk: int) -> None:
        with transaction.atomic():
            Group.objects.filter(pk=group_pk).delete()
            MaintenanceTaskExecution.objects.filter(pk=execution_pk).complete()

    task = make_task("claim", claim, concurrency=concurrency, delay=0.005)
    workers = make_workers(4, work)
    sampler = running_sampler("claim")

    def hand_to_worker(sender, execution, **kwargs):
        workers.submit(execution.pk, int(execution.instruction))

    signals.task_dispatched.connect(hand_to_worker, sender=task, weak=False)
    try:
        make_runner([task], hostname="runner-a", start=True)
        make_runner([task], hostname="runner-b", start=True)
        assert wait_until(
            lambda: (
                not Group.objects.filter(name__startswith="job-").exists()
                and not MaintenanceTaskExecution.objects.running().exists()
            ),
            timeout=30,
        )
    finally:
        signals.task_dispatched.disconnect(hand_to_worker, sender=task)
    samples = sampler.stop()
    workers.stop()

    assert workers.errors == []
    executions = executions_of("claim")
    assert sorted(int(e.instruction) for e in executions) == sorted(
        {int(e.instruction) for e in executions}
    )
    assert len(executions) == jobs
    assert max(samples) <= concurrency
    assert most_at_once(executions) <= concurrency
