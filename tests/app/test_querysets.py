"""The executions' queryset: running, finished, overdue, failed, and the bulk updates.

``complete``, ``fail``, ``heartbeat`` and ``terminate`` end or touch running rows
only, and announce what they ended after the commit.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from django_planton import signals
from django_planton.models import (
    ExecutionState,
    MaintenanceTask,
    MaintenanceTaskExecution,
    Outcome,
)
from django_planton.sql import read_database_now

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory

pytestmark = pytest.mark.django_db


def running_ids(queryset) -> set[int]:
    return set(queryset.values_list("pk", flat=True))


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
    # The database's clock stamps it; SQLite's keeps milliseconds only.
    before = read_database_now("default") - timedelta(milliseconds=1)
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


# -- outcomes -----------------------------------------------------------------------


def test_each_execution_has_one_outcome_and_its_queryset_method_selects_it(mixed_executions):
    e = mixed_executions
    terminated = MaintenanceTaskExecutionFactory(
        maintenance_task=e["running_first"].maintenance_task, terminated=True
    )
    executions = MaintenanceTaskExecution.objects
    expected = {
        Outcome.RUNNING: {e["running_first"].pk, e["running_second"].pk},
        Outcome.SUCCEEDED: {e["completed_first"].pk},
        Outcome.FAILED: {e["failed_second"].pk},
        Outcome.TERMINATED: {terminated.pk},
    }
    for outcome, pks in expected.items():
        assert running_ids(executions.with_outcome(outcome)) == pks, outcome
        for execution in executions.filter(pk__in=pks):
            assert execution.outcome == outcome
    assert running_ids(executions.succeeded()) == expected[Outcome.SUCCEEDED]
    assert str(Outcome.FAILED.label) == "Failed"


def test_a_terminated_execution_is_not_counted_as_failed_even_with_an_error(mixed_executions):
    e = mixed_executions
    execution = e["running_first"]
    MaintenanceTaskExecution.objects.filter(pk=execution.pk).terminate("stuck")
    MaintenanceTaskExecution.objects.filter(pk=execution.pk).update(error={"type": "X"})
    assert execution.pk not in running_ids(MaintenanceTaskExecution.objects.failed())
    assert MaintenanceTaskExecution.objects.get(pk=execution.pk).outcome == Outcome.TERMINATED
