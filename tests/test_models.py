"""The two tables: names, constraints, query helpers and the execution's own methods."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from django_planton import signals
from django_planton.models import (
    ExecutionState,
    MaintenanceTask,
    MaintenanceTaskExecution,
    describe_error,
    insert_executions,
    postgres_array,
    update_rows,
)

from .factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory

pytestmark = pytest.mark.django_db


def running_ids(queryset) -> set[int]:
    return set(queryset.values_list("pk", flat=True))


# -- tables ----------------------------------------------------------------------


def test_table_names():
    assert MaintenanceTask._meta.db_table == "maintenance_task"
    assert MaintenanceTaskExecution._meta.db_table == "maintenance_task_execution"
    tables = set(connection.introspection.table_names())
    assert {"maintenance_task", "maintenance_task_execution"} <= tables


def test_executions_table_is_unlogged_on_postgresql_only():
    if connection.vendor != "postgresql":
        # Nothing to check elsewhere: the migration's UNLOGGED step is PostgreSQL's.
        assert MaintenanceTaskExecution.objects.count() == 0
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, relpersistence FROM pg_class WHERE relname = ANY(%s)",
            [["maintenance_task", "maintenance_task_execution"]],
        )
        persistence = dict(cursor.fetchall())
    assert persistence == {"maintenance_task": "p", "maintenance_task_execution": "u"}


def test_str_of_task_and_execution():
    execution = MaintenanceTaskExecutionFactory(
        maintenance_task__nid="send_email", instruction="42"
    )
    assert str(execution.maintenance_task) == "send_email"
    assert str(execution) == f"{execution.maintenance_task_id}:42"


# -- check constraints -----------------------------------------------------------


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param({"state": "RUNNING", "ended_at": True}, id="running-with-ended_at"),
        pytest.param(
            {"state": "COMPLETED", "terminated_at": True}, id="terminated_at-without-ended_at"
        ),
        pytest.param({"state": "BOGUS"}, id="unknown-state"),
    ],
)
def test_an_impossible_execution_violates_a_constraint(broken):
    fields = {name: timezone.now() if value is True else value for name, value in broken.items()}
    task = MaintenanceTaskFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        MaintenanceTaskExecution.objects.create(
            maintenance_task=task, instruction="1", started_at=timezone.now(), **fields
        )


def test_completed_execution_with_ended_at_is_fine():
    execution = MaintenanceTaskExecutionFactory(completed=True)
    assert execution.state == ExecutionState.COMPLETED
    assert execution.ended_at is not None


def test_an_update_to_an_unknown_state_violates_a_constraint():
    execution = MaintenanceTaskExecutionFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        MaintenanceTaskExecution.objects.filter(pk=execution.pk).update(state="PAUSED")
    execution.refresh_from_db()
    assert execution.state == ExecutionState.RUNNING


# -- MaintenanceTask -------------------------------------------------------------


def test_effective_concurrency_is_the_override_when_set():
    task = MaintenanceTaskFactory(concurrency=3)
    assert task.effective_concurrency == 3
    task.maximum_concurrent_execution_count = 7
    assert task.effective_concurrency == 7
    task.maximum_concurrent_execution_count = 1
    assert task.effective_concurrency == 1


def test_task_queryset_helpers():
    paused = MaintenanceTaskFactory(nid="paused", is_paused=True)
    active = MaintenanceTaskFactory(nid="active")
    MaintenanceTaskExecutionFactory.create_batch(2, maintenance_task=active)
    MaintenanceTaskExecutionFactory(maintenance_task=active, completed=True)

    assert list(MaintenanceTask.objects.for_task("paused")) == [paused]
    assert list(MaintenanceTask.objects.paused()) == [paused]
    assert list(MaintenanceTask.objects.active()) == [active]
    counts = dict(MaintenanceTask.objects.with_running_count().values_list("nid", "running_count"))
    assert counts == {"paused": 0, "active": 2}


# -- the executions' queryset ------------------------------------------------------


@pytest.fixture
def mixed_executions():
    """Two running executions and two ended ones, across two tasks."""
    first = MaintenanceTaskFactory(nid="first")
    second = MaintenanceTaskFactory(nid="second")
    earlier = timezone.now() - timedelta(hours=1)
    return {
        "running_first": MaintenanceTaskExecutionFactory(maintenance_task=first),
        "running_second": MaintenanceTaskExecutionFactory(maintenance_task=second),
        "completed_first": MaintenanceTaskExecutionFactory(
            maintenance_task=first, completed=True, started_at=earlier
        ),
        "failed_second": MaintenanceTaskExecutionFactory(
            maintenance_task=second, failed=True, started_at=earlier
        ),
    }


def test_running_finished_and_for_task(mixed_executions):
    e = mixed_executions
    executions = MaintenanceTaskExecution.objects
    assert running_ids(executions.running()) == {e["running_first"].pk, e["running_second"].pk}
    assert running_ids(executions.finished()) == {
        e["completed_first"].pk,
        e["failed_second"].pk,
    }
    assert running_ids(executions.for_task("first")) == {
        e["running_first"].pk,
        e["completed_first"].pk,
    }
    assert running_ids(executions.for_task("first").running()) == {e["running_first"].pk}
    assert not executions.for_task("nobody").exists()


def test_overdue_uses_each_tasks_maximum_duration():
    now = timezone.now()
    short = MaintenanceTaskFactory(nid="short", maximum_execution_duration=timedelta(minutes=1))
    long = MaintenanceTaskFactory(nid="long", maximum_execution_duration=timedelta(hours=1))
    late = MaintenanceTaskExecutionFactory(
        maintenance_task=short, started_at=now - timedelta(minutes=2)
    )
    MaintenanceTaskExecutionFactory(maintenance_task=short, started_at=now)
    MaintenanceTaskExecutionFactory(maintenance_task=long, started_at=now - timedelta(minutes=2))
    MaintenanceTaskExecutionFactory(
        maintenance_task=short, started_at=now - timedelta(minutes=10), completed=True
    )

    assert running_ids(MaintenanceTaskExecution.objects.overdue()) == {late.pk}
    in_two_hours = now + timedelta(hours=2)
    assert MaintenanceTaskExecution.objects.overdue(now=in_two_hours).count() == 3


def test_queryset_complete_ends_only_running_rows(mixed_executions):
    e = mixed_executions
    completed_before = MaintenanceTaskExecution.objects.get(pk=e["completed_first"].pk)

    count = MaintenanceTaskExecution.objects.for_task("first").complete()

    assert count == 1
    running_first = MaintenanceTaskExecution.objects.get(pk=e["running_first"].pk)
    assert running_first.state == ExecutionState.COMPLETED
    assert running_first.ended_at is not None
    assert running_first.last_seen_at == running_first.ended_at
    assert running_first.error is None
    # The ended row and the other task's row are untouched.
    completed_after = MaintenanceTaskExecution.objects.get(pk=e["completed_first"].pk)
    assert completed_after.ended_at == completed_before.ended_at
    assert completed_after.last_seen_at is None
    assert MaintenanceTaskExecution.objects.get(pk=e["running_second"].pk).is_running
    # Nothing left to end: a second call counts nothing.
    assert MaintenanceTaskExecution.objects.for_task("first").complete() == 0


def test_queryset_fail_records_the_error_on_running_rows_only(mixed_executions):
    e = mixed_executions
    count = MaintenanceTaskExecution.objects.all().fail(RuntimeError("disk full"))

    assert count == 2
    for key in ("running_first", "running_second"):
        execution = MaintenanceTaskExecution.objects.get(pk=e[key].pk)
        assert execution.state == ExecutionState.COMPLETED
        assert execution.error["type"] == "RuntimeError"
        assert execution.error["message"] == "disk full"
    assert MaintenanceTaskExecution.objects.get(pk=e["failed_second"].pk).error == {
        "type": "ValueError",
        "message": "boom",
    }
    assert MaintenanceTaskExecution.objects.get(pk=e["completed_first"].pk).error is None


def test_queryset_fail_accepts_a_string_or_a_dict(mixed_executions):
    e = mixed_executions
    MaintenanceTaskExecution.objects.filter(pk=e["running_first"].pk).fail("gave up")
    MaintenanceTaskExecution.objects.filter(pk=e["running_second"].pk).fail({"code": 7})
    assert MaintenanceTaskExecution.objects.get(pk=e["running_first"].pk).error == {
        "type": "Error",
        "message": "gave up",
    }
    assert MaintenanceTaskExecution.objects.get(pk=e["running_second"].pk).error == {"code": 7}


def test_failed_selects_the_executions_that_ended_with_an_error(mixed_executions):
    e = mixed_executions
    assert list(MaintenanceTaskExecution.objects.failed()) == [e["failed_second"]]
    MaintenanceTaskExecution.objects.filter(pk=e["running_first"].pk).fail("gave up")
    MaintenanceTaskExecution.objects.filter(pk=e["running_second"].pk).complete()
    failed = set(MaintenanceTaskExecution.objects.failed().values_list("pk", flat=True))
    assert failed == {e["failed_second"].pk, e["running_first"].pk}


def test_queryset_heartbeat_touches_running_rows_only(mixed_executions):
    e = mixed_executions
    before = timezone.now()
    assert MaintenanceTaskExecution.objects.all().heartbeat() == 2
    seen = dict(MaintenanceTaskExecution.objects.values_list("pk", "last_seen_at"))
    assert seen[e["running_first"].pk] >= before
    assert seen[e["running_second"].pk] >= before
    assert seen[e["completed_first"].pk] is None
    assert seen[e["failed_second"].pk] is None


def test_queryset_complete_announces_ended_tasks_after_commit(
    mixed_executions, record_signal, django_capture_on_commit_callbacks
):
    ended = record_signal(signals.executions_ended)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        MaintenanceTaskExecution.objects.all().complete()
        assert len(ended) == 0  # not before the commit
    assert len(callbacks) == 1
    assert len(ended) == 1
    task_ids = ended[0]["task_ids"]
    assert set(task_ids) == set(MaintenanceTask.objects.values_list("pk", flat=True))
    assert ended[0]["sender"] is MaintenanceTaskExecution


def test_queryset_complete_of_nothing_announces_nothing(
    record_signal, django_capture_on_commit_callbacks
):
    MaintenanceTaskExecutionFactory(completed=True)
    ended = record_signal(signals.executions_ended)
    with django_capture_on_commit_callbacks(execute=True):
        assert MaintenanceTaskExecution.objects.all().complete() == 0
    assert len(ended) == 0


def test_terminate_returns_the_executions_it_ended(
    mixed_executions, record_signal, django_capture_on_commit_callbacks
):
    e = mixed_executions
    terminated = record_signal(signals.execution_terminated)
    ended_signal = record_signal(signals.executions_ended)

    with django_capture_on_commit_callbacks(execute=True):
        ended = MaintenanceTaskExecution.objects.all().terminate("stuck")
        assert len(terminated) == 0  # only once the transaction commits

    assert {execution.pk for execution in ended} == {
        e["running_first"].pk,
        e["running_second"].pk,
    }
    for execution in ended:
        assert execution.state == ExecutionState.COMPLETED
        assert execution.terminated_reason == "stuck"
        assert execution.ended_at == execution.terminated_at
        assert execution.maintenance_task.nid in {"first", "second"}
        row = MaintenanceTaskExecution.objects.get(pk=execution.pk)
        assert row.state == ExecutionState.COMPLETED
        assert row.terminated_reason == "stuck"
        assert row.terminated_at is not None
        assert row.ended_at == row.terminated_at
    # Already-ended rows are not terminated.
    assert not MaintenanceTaskExecution.objects.get(pk=e["completed_first"].pk).terminated_at
    assert MaintenanceTaskExecution.objects.terminated().count() == 2

    assert sorted(call["execution"].pk for call in terminated.items) == sorted(
        execution.pk for execution in ended
    )
    assert {call["reason"] for call in terminated.items} == {"stuck"}
    assert {call["sender"] for call in terminated.items} == {MaintenanceTaskExecution}
    assert len(ended_signal) == 1
    assert set(ended_signal[0]["task_ids"]) == set(
        MaintenanceTask.objects.values_list("pk", flat=True)
    )


def test_terminate_of_nothing_running_returns_nothing(
    record_signal, django_capture_on_commit_callbacks
):
    MaintenanceTaskExecutionFactory(completed=True)
    terminated = record_signal(signals.execution_terminated)
    with django_capture_on_commit_callbacks(execute=True):
        assert MaintenanceTaskExecution.objects.all().terminate("stuck") == []
    assert len(terminated) == 0


def test_a_failing_execution_terminated_receiver_does_not_stop_the_others(
    mixed_executions, record_signal, django_capture_on_commit_callbacks, caplog
):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver broke")

    signals.execution_terminated.connect(broken, weak=False)
    try:
        terminated = record_signal(signals.execution_terminated)
        with django_capture_on_commit_callbacks(execute=True):
            ended = MaintenanceTaskExecution.objects.all().terminate("stuck")
    finally:
        signals.execution_terminated.disconnect(broken)
    assert len(terminated) == len(ended) == 2
    assert "receiver broke" in caplog.text


# -- one execution ---------------------------------------------------------------


def test_complete_ends_a_running_execution_once():
    execution = MaintenanceTaskExecutionFactory()
    assert execution.is_running
    assert execution.complete() is True
    assert execution.state == ExecutionState.COMPLETED
    assert execution.ended_at is not None
    assert not execution.is_running
    stored = MaintenanceTaskExecution.objects.get(pk=execution.pk)
    assert stored.state == ExecutionState.COMPLETED
    assert stored.ended_at == execution.ended_at
    assert stored.error is None
    # A second complete (or fail) finds nothing running and changes nothing.
    assert execution.complete() is False
    assert execution.fail(ValueError("late")) is False
    assert MaintenanceTaskExecution.objects.get(pk=execution.pk).error is None


def test_complete_announces_the_ended_task_after_commit(
    record_signal, django_capture_on_commit_callbacks
):
    execution = MaintenanceTaskExecutionFactory()
    ended = record_signal(signals.executions_ended)
    with django_capture_on_commit_callbacks(execute=True):
        execution.complete()
        assert len(ended) == 0
    assert [call["task_ids"] for call in ended.items] == [{execution.maintenance_task_id}]


def test_fail_records_type_message_and_traceback():
    execution = MaintenanceTaskExecutionFactory()
    with pytest.raises(KeyError) as raised:
        raise KeyError("missing row")
    assert execution.fail(raised.value) is True
    stored = MaintenanceTaskExecution.objects.get(pk=execution.pk)
    assert stored.state == ExecutionState.COMPLETED
    assert stored.ended_at is not None
    assert stored.error["type"] == "KeyError"
    assert stored.error["message"] == "'missing row'"
    assert stored.error["traceback"].startswith("Traceback (most recent call last)")
    assert "test_fail_records_type_message_and_traceback" in stored.error["traceback"]
    assert stored.error == execution.error


def test_describe_error_of_a_nested_exception_class():
    class Outer:
        class Problem(Exception):
            pass

    described = describe_error(Outer.Problem("x"))
    assert described["type"].endswith("Outer.Problem")
    assert described["message"] == "x"


def test_heartbeat_records_last_seen_while_running():
    execution = MaintenanceTaskExecutionFactory()
    assert execution.last_seen_at is None
    assert execution.heartbeat() is True
    first = MaintenanceTaskExecution.objects.get(pk=execution.pk).last_seen_at
    assert first is not None
    assert execution.last_seen_at == first
    execution.complete()
    ended_seen = MaintenanceTaskExecution.objects.get(pk=execution.pk).last_seen_at
    assert execution.heartbeat() is False
    assert MaintenanceTaskExecution.objects.get(pk=execution.pk).last_seen_at == ended_seen


def test_tracking_completes_the_execution():
    execution = MaintenanceTaskExecutionFactory()
    with execution.tracking() as tracked:
        assert tracked is execution
        assert MaintenanceTaskExecution.objects.get(pk=execution.pk).is_running
    stored = MaintenanceTaskExecution.objects.get(pk=execution.pk)
    assert stored.state == ExecutionState.COMPLETED
    assert stored.error is None


def test_tracking_fails_the_execution_and_raises_again():
    execution = MaintenanceTaskExecutionFactory()
    with pytest.raises(ZeroDivisionError), execution.tracking():
        1 / 0  # noqa: B018
    stored = MaintenanceTaskExecution.objects.get(pk=execution.pk)
    assert stored.state == ExecutionState.COMPLETED
    assert stored.ended_at is not None
    assert stored.error["type"] == "ZeroDivisionError"
    assert "division by zero" in stored.error["message"]
    assert "Traceback" in stored.error["traceback"]


def test_duration_of_running_and_ended_executions():
    started = timezone.now() - timedelta(seconds=30)
    ended = MaintenanceTaskExecutionFactory(started_at=started, completed=True)
    assert ended.duration == timedelta(seconds=1)
    running = MaintenanceTaskExecutionFactory(started_at=started)
    assert running.duration >= timedelta(seconds=30)


def test_deleting_a_task_deletes_its_executions():
    execution = MaintenanceTaskExecutionFactory()
    execution.maintenance_task.delete()
    assert not MaintenanceTaskExecution.objects.filter(pk=execution.pk).exists()


# -- the runner's writes ---------------------------------------------------------------


def new_executions(task: MaintenanceTask, instructions: list[str]) -> list[Any]:
    now = timezone.now()
    return [
        MaintenanceTaskExecution(
            maintenance_task=task,
            instruction=instruction,
            started_at=now,
            hostname="test-host",
            state=ExecutionState.RUNNING,
            created_at=now,
        )
        for instruction in instructions
    ]


def test_insert_executions_stores_each_row_and_sets_its_primary_key():
    first, second = MaintenanceTaskFactory(), MaintenanceTaskFactory()
    odd = ['with "quotes"', "back\\slash", "comma,brace}{", "ünïcode", "NULL", ""]
    executions = new_executions(first, odd) + new_executions(second, ["7"])

    insert_executions(executions, using="default")

    assert all(execution.pk is not None for execution in executions)
    stored = {
        execution.pk: execution
        for execution in MaintenanceTaskExecution.objects.filter(
            pk__in=[execution.pk for execution in executions]
        )
    }
    assert [stored[e.pk].instruction for e in executions] == [*odd, "7"]
    assert [stored[e.pk].maintenance_task_id for e in executions] == [first.pk] * 6 + [second.pk]
    one = stored[executions[0].pk]
    assert one.state == ExecutionState.RUNNING
    assert one.hostname == "test-host"
    assert one.started_at == executions[0].started_at
    assert one.ended_at is one.error is one.terminated_reason is one.last_seen_at is None
    # The instances are saved ones: completing them works without a reload.
    assert executions[-1].complete()
    assert MaintenanceTaskExecution.objects.get(pk=executions[-1].pk).state == "COMPLETED"


def test_insert_executions_splits_what_one_statement_cannot_carry():
    task = MaintenanceTaskFactory()
    executions = new_executions(task, [str(number) for number in range(1200)])

    insert_executions(executions, using="default")

    assert len({execution.pk for execution in executions}) == 1200
    assert MaintenanceTaskExecution.objects.filter(maintenance_task=task).count() == 1200


def test_insert_executions_of_nothing_sends_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        insert_executions([], using="default")


def test_update_rows_adds_to_each_row_and_sets_the_rest():
    tasks = [MaintenanceTaskFactory(attempt_number=number) for number in (0, 4, 9)]
    untouched = MaintenanceTaskFactory(attempt_number=2)
    now = timezone.now()

    count = update_rows(
        MaintenanceTask,
        [task.pk for task in tasks],
        {"last_error": "", "last_attempted_at": now},
        using="default",
        add={"attempt_number": 1},
    )

    assert count == 3
    rows = MaintenanceTask.objects.filter(pk__in=[task.pk for task in tasks]).order_by("pk")
    assert [row.attempt_number for row in rows] == [1, 5, 10]
    assert {row.last_attempted_at for row in rows} == {now}
    assert MaintenanceTask.objects.get(pk=untouched.pk).attempt_number == 2


@pytest.mark.parametrize(
    ("values", "literal"),
    [
        ([1, 22, 333], "{1,22,333}"),
        (["a", "b"], '{"a","b"}'),
        (['q"uote', "back\\slash"], '{"q\\"uote","back\\\\slash"}'),
        ([], "{}"),
    ],
)
def test_postgres_array_literals(values, literal):
    assert postgres_array(values) == literal
