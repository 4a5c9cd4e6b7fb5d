"""One execution's own methods: complete, fail, heartbeat, tracking, duration."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import timedelta

import pytest
from django.utils import timezone

from django_planton import signals
from django_planton.models import ExecutionState, MaintenanceTaskExecution, describe_error

from ..factories import MaintenanceTaskExecutionFactory

pytestmark = pytest.mark.django_db


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


class ReceiverBroke(Exception):
    pass


def test_tracking_records_the_users_own_exception_and_raises_that_same_object():
    execution = MaintenanceTaskExecutionFactory()
    error = ReceiverBroke("mail server said no")
    with pytest.raises(ReceiverBroke) as raised, execution.tracking():
        raise error
    assert raised.value is error
    assert execution.error["type"] == "ReceiverBroke"
    assert execution.error["message"] == "mail server said no"
    stored = MaintenanceTaskExecution.objects.get(pk=execution.pk)
    assert not stored.is_running
    assert stored.error == execution.error
    assert "raise error" in stored.error["traceback"]
    assert MaintenanceTaskExecution.objects.failed().get() == stored


@pytest.mark.parametrize("fails", [False, True], ids=["clean", "raising"])
def test_tracking_announces_the_ended_task_after_commit(
    record_signal, django_capture_on_commit_callbacks, fails
):
    execution = MaintenanceTaskExecutionFactory()
    ended = record_signal(signals.executions_ended)
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(ReceiverBroke) if fails else nullcontext(), execution.tracking():
            if fails:
                raise ReceiverBroke("x")
        assert len(ended) == 0
    assert [call["task_ids"] for call in ended.items] == [{execution.maintenance_task_id}]


@pytest.mark.parametrize("fails", [False, True], ids=["clean", "raising"])
def test_tracking_leaves_an_execution_terminated_meanwhile_as_it_was_ended(fails):
    execution = MaintenanceTaskExecutionFactory()
    with pytest.raises(ReceiverBroke) if fails else nullcontext(), execution.tracking():
        [terminated] = MaintenanceTaskExecution.objects.filter(pk=execution.pk).terminate(
            "maximum execution duration exceeded"
        )
        if fails:
            raise ReceiverBroke("too late")
    stored = MaintenanceTaskExecution.objects.get(pk=execution.pk)
    assert stored.terminated_reason == "maximum execution duration exceeded"
    assert stored.ended_at == terminated.ended_at
    assert stored.error is None


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
