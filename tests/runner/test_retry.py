"""Retry policies on the database: failed instructions held back, retried, given up, released.

Every test here is transactional: cycles commit for real. No runner is
started; each test drives cycles one at a time and makes a task due by
clearing ``next_attempt_at``, so that nothing depends on timing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.test import override_settings
from django.utils import timezone

from django_planton import RetryPolicy, Task
from django_planton.core import DEFAULT_RETRY
from django_planton.models import FailingInstruction, MaintenanceTask, MaintenanceTaskExecution
from django_planton.registry import TaskRegistry
from django_planton.sql import read_database_now

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory
from ..support import scripted
from .helpers import executions_of, row

pytestmark = pytest.mark.django_db(transaction=True)

_DEFAULT = object()
TOLERANCE = timedelta(milliseconds=5)


@pytest.fixture
def retry_task(planton_registry: TaskRegistry) -> Callable[..., Task]:
    """A registered task whose schedule returns ``then`` forever, with a retry policy.

    The policy is looked up in the registry when an execution ends, so the
    task must be registered there (the emptied global registry).
    """

    def make(
        name: str = "mail",
        then: tuple[str, ...] = ("a",),
        *,
        retry: RetryPolicy | object | None = _DEFAULT,
        concurrency: int = 1,
    ) -> Task:
        options = {} if retry is _DEFAULT else {"retry": retry}
        task = Task(
            name=name,
            schedule=scripted(then=then),
            concurrency=concurrency,
            calculate_delay=lambda attempt_number: 0.01,
            **options,
        )
        planton_registry.register(task)
        return task

    return make


def cycle(runner, task):
    """One cycle of ``task``, made due first."""
    MaintenanceTask.objects.filter(nid=task.name).update(next_attempt_at=None)
    return runner.cycle_runner.run(task)


def running_of(name: str) -> list[MaintenanceTaskExecution]:
    return list(MaintenanceTaskExecution.objects.for_task(name).running().order_by("pk"))


def failing(name: str, instruction: str = "a") -> FailingInstruction:
    return FailingInstruction.objects.get(maintenance_task__nid=name, instruction=instruction)


def retry_now(name: str, instruction: str = "a") -> None:
    """Let the retry delay pass: move ``retry_at`` into the past (not a release)."""
    updated = FailingInstruction.objects.filter(
        maintenance_task__nid=name, instruction=instruction
    ).update(retry_at=timezone.now() - timedelta(hours=1))
    assert updated == 1


def contexts_of(task: Task):
    return task.schedule.contexts.items


def close_to(value: timedelta, expected_seconds: float) -> bool:
    return abs(value - timedelta(seconds=expected_seconds)) <= TOLERANCE


# -- held back, then retried -----------------------------------------------------------


def test_a_failed_instruction_is_held_back_even_though_its_slot_is_free(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    [report] = runner.run_once()
    assert report.instructions == ("a",)
    [execution] = executions_of("mail")
    assert execution.attempt == 1

    assert execution.fail(ValueError("mail server says no"))

    held = failing("mail")
    assert held.failures == 1
    assert held.given_up_at is None
    assert not held.is_given_up
    assert held.last_failed_at == execution.ended_at
    assert close_to(held.retry_at - held.last_failed_at, 10.0)
    assert held.last_error["type"] == "ValueError"
    assert held.last_error["message"] == "mail server says no"
    assert list(FailingInstruction.objects.held_back()) == [held]

    report = cycle(runner, task)

    assert report.errors == ()
    assert report.instructions == ()
    assert running_of("mail") == []  # the slot is free, and stays free
    assert contexts_of(task)[-1].held_back_instructions == ("a",)
    assert contexts_of(task)[-1].active_task_instructions == ()
    assert MaintenanceTaskExecution.objects.count() == 1


def test_an_instruction_whose_retry_time_passed_is_dispatched_as_attempt_two(
    retry_task, make_runner
):
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()
    executions_of("mail")[0].fail("boom")
    assert cycle(runner, task).instructions == ()

    retry_now("mail")
    report = cycle(runner, task)

    assert report.instructions == ("a",)
    assert contexts_of(task)[-1].held_back_instructions == ()
    [retry] = running_of("mail")
    assert retry.attempt == 2
    # Dispatching a retry leaves the failure in place until the retry succeeds.
    assert failing("mail").failures == 1


def test_a_completed_retry_forgets_the_failures(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()
    executions_of("mail")[0].fail("boom")
    retry_now("mail")
    cycle(runner, task)
    [retry] = running_of("mail")

    assert retry.complete()

    assert not FailingInstruction.objects.exists()
    report = cycle(runner, task)
    assert report.instructions == ("a",)
    assert running_of("mail")[0].attempt == 1  # a fresh start


def test_a_retry_completed_through_tracking_forgets_the_failures(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()
    with pytest.raises(RuntimeError), executions_of("mail")[0].tracking():
        raise RuntimeError("first try")
    assert failing("mail").last_error["type"] == "RuntimeError"
    retry_now("mail")
    cycle(runner, task)

    with running_of("mail")[0].tracking():
        pass

    assert not FailingInstruction.objects.exists()


def test_failures_count_up_and_the_delay_follows_the_policy(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    policy = task.retry
    runner.run_once()

    for failures in (1, 2, 3):
        [execution] = running_of("mail")
        assert execution.attempt == failures
        execution.fail(f"failure {failures}")
        held = failing("mail")
        assert held.failures == failures
        assert held.last_error["message"] == f"failure {failures}"
        assert close_to(held.retry_at - held.last_failed_at, policy.hold_back(failures))
        assert cycle(runner, task).instructions == ()  # held back
        retry_now("mail")
        assert cycle(runner, task).instructions == ("a",)

    assert [e.attempt for e in executions_of("mail")] == [1, 2, 3, 4]
    assert FailingInstruction.objects.count() == 1


def test_a_custom_delay_spaces_the_retries(retry_task, make_runner):
    policy = RetryPolicy(delay=lambda failures: 100.0 * failures)
    task = retry_task(retry=policy)
    runner = make_runner([task])
    runner.run_once()
    running_of("mail")[0].fail("no")
    held = failing("mail")
    assert close_to(held.retry_at - held.last_failed_at, 100.0)
    retry_now("mail")
    cycle(runner, task)
    running_of("mail")[0].fail("no")
    held = failing("mail")
    assert close_to(held.retry_at - held.last_failed_at, 200.0)


def test_the_retry_delay_is_counted_from_the_databases_clock(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()
    before = read_database_now("default")
    running_of("mail")[0].fail("no")
    after = read_database_now("default")
    held = failing("mail")
    assert before <= held.last_failed_at <= after


# -- giving up ---------------------------------------------------------------------------


def test_max_attempts_gives_up_and_release_dispatches_again(retry_task, make_runner, caplog):
    caplog.set_level(logging.INFO, logger="django_planton")
    task = retry_task(retry=RetryPolicy(max_attempts=2))
    runner = make_runner([task])
    runner.run_once()
    running_of("mail")[0].fail("first")
    assert failing("mail").given_up_at is None
    retry_now("mail")
    cycle(runner, task)
    [second] = running_of("mail")
    assert second.attempt == 2

    second.fail("second")

    held = failing("mail")
    assert held.failures == 2
    assert held.given_up_at is not None
    assert held.is_given_up
    assert held.retry_at is None
    assert list(FailingInstruction.objects.given_up()) == [held]
    assert list(FailingInstruction.objects.held_back()) == []

    # Not dispatched, cycle after cycle, even with a retry time in the past.
    FailingInstruction.objects.update(retry_at=timezone.now() - timedelta(days=1))
    for _ in range(3):
        assert cycle(runner, task).instructions == ()
        assert contexts_of(task)[-1].held_back_instructions == ("a",)
    assert running_of("mail") == []

    gave_up = [r for r in caplog.records if r.getMessage().startswith("Gave up")]
    assert len(gave_up) == 1
    assert gave_up[0].levelno == logging.WARNING
    assert "instruction a of task mail after 2 failure(s)" in gave_up[0].getMessage()
    assert gave_up[0].task_name == "mail"
    assert gave_up[0].instruction == "a"

    assert FailingInstruction.objects.filter(instruction="a").release() == 1

    assert not FailingInstruction.objects.exists()
    assert cycle(runner, task).instructions == ("a",)
    assert running_of("mail")[0].attempt == 1


def test_max_attempts_of_one_gives_up_at_the_first_failure(retry_task, make_runner):
    task = retry_task(retry=RetryPolicy(max_attempts=1))
    runner = make_runner([task])
    runner.run_once()
    running_of("mail")[0].fail("once is enough")
    held = failing("mail")
    assert held.is_given_up
    assert held.retry_at is None
    assert cycle(runner, task).instructions == ()


def test_give_up_by_an_operator_holds_back_for_good(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()
    running_of("mail")[0].fail("no")

    assert FailingInstruction.objects.give_up() == 1
    assert FailingInstruction.objects.give_up() == 0  # already given up

    held = failing("mail")
    assert held.is_given_up
    assert held.retry_at is None
    assert cycle(runner, task).instructions == ()
    FailingInstruction.objects.update(retry_at=timezone.now() - timedelta(days=1))
    assert cycle(runner, task).instructions == ()


def test_release_before_the_retry_time_dispatches_at_the_next_attempt(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()
    running_of("mail")[0].fail("no")
    assert cycle(runner, task).instructions == ()

    assert FailingInstruction.objects.release() == 1

    assert cycle(runner, task).instructions == ("a",)
    # Released: the failures are forgotten, so this is a first attempt again.
    assert running_of("mail")[0].attempt == 1


# -- no policy ---------------------------------------------------------------------------


def test_without_a_policy_a_failed_instruction_is_dispatched_again_at_once(retry_task, make_runner):
    task = retry_task(retry=None)
    runner = make_runner([task])
    runner.run_once()
    running_of("mail")[0].fail("no")

    assert not FailingInstruction.objects.exists()
    assert cycle(runner, task).instructions == ("a",)
    assert running_of("mail")[0].attempt == 1
    assert contexts_of(task)[-1].held_back_instructions == ()


def test_a_task_this_process_does_not_register_gets_the_default_policy(planton_registry):
    execution = MaintenanceTaskExecutionFactory(
        maintenance_task=MaintenanceTaskFactory(nid="elsewhere"), instruction="x"
    )
    assert "elsewhere" not in planton_registry

    execution.fail("no")

    held = failing("elsewhere", "x")
    assert held.failures == 1
    assert close_to(held.retry_at - held.last_failed_at, DEFAULT_RETRY.hold_back(1))


def test_only_the_failed_instruction_is_held_back(retry_task, make_runner):
    task = retry_task(then=("a", "b"), concurrency=2)
    runner = make_runner([task])
    runner.run_once()
    by_instruction = {e.instruction: e for e in running_of("mail")}
    by_instruction["a"].fail("no")
    by_instruction["b"].complete()

    report = cycle(runner, task)

    assert report.instructions == ("b",)
    assert contexts_of(task)[-1].held_back_instructions == ("a",)
    assert [e.instruction for e in running_of("mail")] == ["b"]


# -- termination --------------------------------------------------------------------------


def test_a_termination_by_housekeeping_counts_as_a_failure(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()
    [execution] = running_of("mail")
    MaintenanceTaskExecution.objects.filter(pk=execution.pk).update(
        started_at=read_database_now("default") - timedelta(hours=1)
    )

    runner.housekeep(prune=False)

    execution.refresh_from_db()
    assert execution.terminated_at is not None
    held = failing("mail")
    assert held.failures == 1
    assert held.last_error["type"] == "Terminated"
    assert held.last_error["message"] == "maximum execution duration exceeded"
    assert held.last_failed_at == execution.ended_at
    assert close_to(held.retry_at - held.last_failed_at, task.retry.hold_back(1))
    assert cycle(runner, task).instructions == ()

    retry_now("mail")
    assert cycle(runner, task).instructions == ("a",)
    assert running_of("mail")[0].attempt == 2


def test_an_operators_termination_counts_as_a_failure(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()

    ended = MaintenanceTaskExecution.objects.for_task("mail").terminate("stopped by operator")

    assert len(ended) == 1
    held = failing("mail")
    assert held.last_error == {"type": "Terminated", "message": "stopped by operator"}
    assert cycle(runner, task).instructions == ()


# -- the log line of a held-back instruction ----------------------------------------------


def held_back_logs(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "holds back" in r.getMessage()]


def test_a_returned_held_back_instruction_is_logged_once_at_info(retry_task, make_runner, caplog):
    caplog.set_level(logging.INFO, logger="django_planton")
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()
    running_of("mail")[0].fail("no")

    reports = [cycle(runner, task) for _ in range(4)]

    assert all(report.errors == () for report in reports)
    [record] = held_back_logs(caplog)
    assert record.levelno == logging.INFO
    assert record.task_name == "mail"
    assert record.instruction == "a"
    assert "mail" in record.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    # Dispatched once more and failed again: worth a line again.
    retry_now("mail")
    assert cycle(runner, task).instructions == ("a",)
    running_of("mail")[0].fail("no again")
    for _ in range(3):
        cycle(runner, task)
    assert len(held_back_logs(caplog)) == 2


def test_a_schedule_that_leaves_out_held_back_instructions_logs_nothing(
    planton_registry, make_runner, caplog
):
    caplog.set_level(logging.INFO, logger="django_planton")

    def polite(context):
        return [i for i in ("a", "b") if i not in context.held_back_instructions][: context.limit]

    task = planton_registry.register(
        Task("polite", polite, concurrency=1, calculate_delay=lambda attempt_number: 0.01)
    )
    runner = make_runner([task])
    runner.run_once()
    running_of("polite")[0].fail("no")

    assert cycle(runner, task).instructions == ("b",)
    assert held_back_logs(caplog) == []


# -- bulk endings keep the failing instructions consistent ---------------------------------


def test_queryset_fail_and_complete_keep_failing_instructions_consistent(retry_task, make_runner):
    task = retry_task(then=("a", "b"), concurrency=2)
    runner = make_runner([task])
    runner.run_once()
    # A failure of another instruction, held back, that the bulk calls must not touch.
    other = MaintenanceTaskExecutionFactory(maintenance_task=row("mail"), instruction="c")
    other.fail("c failed")

    assert MaintenanceTaskExecution.objects.for_task("mail").fail("all down") == 2

    assert sorted(
        FailingInstruction.objects.values_list("instruction", "failures", "given_up_at")
    ) == [("a", 1, None), ("b", 1, None), ("c", 1, None)]
    for held in FailingInstruction.objects.filter(instruction__in=["a", "b"]):
        assert held.last_error == {"type": "Error", "message": "all down"}
        assert close_to(held.retry_at - held.last_failed_at, task.retry.hold_back(1))

    retry_now("mail", "a")
    retry_now("mail", "b")
    assert cycle(runner, task).instructions == ("a", "b")
    assert sorted(e.attempt for e in running_of("mail")) == [2, 2]

    assert MaintenanceTaskExecution.objects.for_task("mail").complete() == 2

    assert list(FailingInstruction.objects.values_list("instruction", flat=True)) == ["c"]


def test_queryset_fail_of_retries_counts_the_failures_up(retry_task, make_runner):
    task = retry_task(retry=RetryPolicy(max_attempts=2))
    runner = make_runner([task])
    runner.run_once()
    MaintenanceTaskExecution.objects.for_task("mail").fail("one")
    retry_now("mail")
    cycle(runner, task)

    assert MaintenanceTaskExecution.objects.for_task("mail").running().fail("two") == 1

    held = failing("mail")
    assert held.failures == 2
    assert held.is_given_up


def test_queryset_complete_of_first_attempts_writes_no_failing_instruction(retry_task, make_runner):
    task = retry_task(then=("a", "b"), concurrency=2)
    make_runner([task]).run_once()
    assert MaintenanceTaskExecution.objects.for_task("mail").complete() == 2
    assert not FailingInstruction.objects.exists()


def test_failing_an_ended_execution_again_changes_nothing(retry_task, make_runner):
    task = retry_task()
    make_runner([task]).run_once()
    [execution] = running_of("mail")
    assert execution.fail("once")
    before = failing("mail")

    assert not execution.fail("twice")
    assert MaintenanceTaskExecution.objects.for_task("mail").fail("thrice") == 0

    after = failing("mail")
    assert (after.failures, after.retry_at, after.last_error) == (
        before.failures,
        before.retry_at,
        before.last_error,
    )


# -- pruning ------------------------------------------------------------------------------


def test_pruning_old_executions_leaves_the_failing_instructions(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()
    running_of("mail")[0].fail("long ago")
    MaintenanceTaskExecution.objects.update(
        started_at=timezone.now() - timedelta(days=30),
        ended_at=timezone.now() - timedelta(days=30),
    )

    with override_settings(PLANTON_KEEP_COMPLETED_EXECUTIONS=timedelta(days=1)):
        assert runner.prune() == 1
        runner.housekeep()

    assert not MaintenanceTaskExecution.objects.exists()
    held = failing("mail")
    assert held.failures == 1
    assert cycle(runner, task).instructions == ()
    retry_now("mail")
    assert cycle(runner, task).instructions == ("a",)
    # The failure history outlived the pruned execution.
    assert running_of("mail")[0].attempt == 2


def test_deleting_the_task_row_deletes_its_failing_instructions(retry_task, make_runner):
    task = retry_task()
    make_runner([task]).run_once()
    running_of("mail")[0].fail("no")
    row("mail").delete()
    assert not FailingInstruction.objects.exists()


# -- row locks ------------------------------------------------------------------------------


@contextmanager
def task_row_locked_elsewhere(name: str) -> Iterator[None]:
    """The task's row locked by another connection, as a cycle in flight holds it."""
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                list(MaintenanceTask.objects.select_for_update().filter(nid=name))
                held.set()
                release.wait(10)
        except BaseException as error:  # handed back below
            errors.append(error)
            held.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold, name="test-cycle-in-flight")
    thread.start()
    try:
        assert held.wait(10)
        yield
    finally:
        release.set()
        thread.join(10)
    assert not errors


@contextmanager
def lock_timeout_of_one_second() -> Iterator[None]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET lock_timeout = '1s'")
        else:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("RESET lock_timeout")
            else:
                cursor.execute("SET SESSION innodb_lock_wait_timeout = DEFAULT")


row_locks = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="row locks: PostgreSQL and MariaDB only"
)


def retry_running(runner, task, *instructions: str) -> list[MaintenanceTaskExecution]:
    """Fail the running executions once, let the delay pass, dispatch their retries."""
    MaintenanceTaskExecution.objects.for_task(task.name).fail("first")
    for instruction in instructions:
        retry_now(task.name, instruction)
    assert cycle(runner, task).instructions == instructions
    retries = running_of(task.name)
    assert [e.attempt for e in retries] == [2] * len(instructions)
    return retries


# A cycle holds its task's row with FOR UPDATE while the schedule runs. Ending
# an execution must not queue behind it: a receiver that failed inside its
# own transaction, holding rows a schedule claims, would deadlock with it.


@row_locks
def test_a_first_failure_does_not_wait_for_a_cycle_in_flight(retry_task, make_runner):
    task = retry_task()
    make_runner([task]).run_once()
    [execution] = running_of("mail")

    with task_row_locked_elsewhere("mail"), lock_timeout_of_one_second():
        assert execution.fail("no")

    assert failing("mail").failures == 1


@row_locks
def test_a_repeated_failure_does_not_wait_for_a_cycle_in_flight(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()
    [retry] = retry_running(runner, task, "a")

    with task_row_locked_elsewhere("mail"), lock_timeout_of_one_second():
        assert retry.fail("again")

    assert failing("mail").failures == 2


@row_locks
def test_a_completed_retry_does_not_wait_for_a_cycle_in_flight(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()
    [retry] = retry_running(runner, task, "a")

    with task_row_locked_elsewhere("mail"), lock_timeout_of_one_second():
        assert retry.complete()

    assert not FailingInstruction.objects.exists()


@row_locks
def test_completing_a_tasks_retries_in_bulk_does_not_wait_for_a_cycle_in_flight(
    retry_task, make_runner
):
    # terminate() takes care not to lock the task's row (a FOR UPDATE over the
    # join with maintenance_task would); complete() on for_task() must not either.
    task = retry_task(then=("a", "b"), concurrency=2)
    runner = make_runner([task])
    runner.run_once()
    retry_running(runner, task, "a", "b")

    with task_row_locked_elsewhere("mail"), lock_timeout_of_one_second():
        assert MaintenanceTaskExecution.objects.for_task("mail").complete() == 2

    assert not FailingInstruction.objects.exists()


@row_locks
def test_failing_a_tasks_retries_in_bulk_does_not_wait_for_a_cycle_in_flight(
    retry_task, make_runner
):
    task = retry_task(then=("a", "b"), concurrency=2)
    runner = make_runner([task])
    runner.run_once()
    retry_running(runner, task, "a", "b")

    with task_row_locked_elsewhere("mail"), lock_timeout_of_one_second():
        assert MaintenanceTaskExecution.objects.for_task("mail").fail("down") == 2

    assert sorted(FailingInstruction.objects.values_list("failures", flat=True)) == [2, 2]


@row_locks
def test_housekeeping_does_not_wait_for_a_cycle_in_flight(retry_task, make_runner):
    task = retry_task()
    runner = make_runner([task])
    runner.run_once()
    MaintenanceTaskExecution.objects.update(
        started_at=read_database_now("default") - timedelta(hours=1)
    )

    with task_row_locked_elsewhere("mail"), lock_timeout_of_one_second():
        runner.housekeep(prune=False)

    assert failing("mail").last_error["type"] == "Terminated"
