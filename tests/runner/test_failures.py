"""Failed cycles roll back, failing receivers are contained, lost connections are replaced.

Every test here is transactional: cycles commit for real, signals are sent
from ``on_commit`` and background runners work on connections of their own.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import OperationalError, connection, connections
from django.utils import timezone

from django_planton import UnexpectedTaskInstructionsError, signals
from django_planton.models import ExecutionState, MaintenanceTask, MaintenanceTaskExecution
from django_planton.runner import DatabaseCycleRunner, sync_tasks

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory
from .helpers import executions_of, instructions_of, row, waits

pytestmark = pytest.mark.django_db(transaction=True)


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
    assert state.last_error.split("\n")[0] == "ValueError: no more rows"
    # Then the traceback, for the task's page; its own last line repeats the error.
    assert "\n\nTraceback (most recent call last):\n" in state.last_error
    assert state.last_error.splitlines()[-1] == "ValueError: no more rows"
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
        assert row("flaky").attempt_number == attempt_number
        assert row("flaky").last_error.split("\n")[0] == message

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
    # Threads (the default executor) run them at once: in any order.
    assert sorted(call["instruction"] for call in after_broken.items) == ["bad", "good", "later"]
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


def test_a_very_long_last_error_keeps_its_first_line_and_its_end():
    from django_planton.runner.writes import _MOST_ERROR, attempt_state

    error = "RuntimeError: first line\n\n" + "x" * (3 * _MOST_ERROR) + "\nRuntimeError: end"
    kept = attempt_state(1.0, error=error)["last_error"]
    assert len(kept) <= _MOST_ERROR
    assert kept.startswith("RuntimeError: first line\n\n[...]\n")
    assert kept.endswith("\nRuntimeError: end")
