"""The contracts of the signals: who sends them, with what, and only after a commit."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from django_planton import signals
from django_planton.models import ExecutionState, MaintenanceTask, MaintenanceTaskExecution

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory

pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    pass


def test_no_executions_ended_when_the_transaction_rolls_back(record_signal):
    execution = MaintenanceTaskExecutionFactory()
    ended = record_signal(signals.executions_ended)

    def complete_then_roll_back():
        with transaction.atomic():
            assert execution.complete()
            raise Rollback

    with pytest.raises(Rollback):
        complete_then_roll_back()

    assert len(ended) == 0
    assert MaintenanceTaskExecution.objects.get(pk=execution.pk).is_running

    assert execution.__class__.objects.filter(pk=execution.pk).complete() == 1
    assert [call["task_ids"] for call in ended.items] == [{execution.maintenance_task_id}]


def test_executions_ended_waits_for_the_outer_transaction(record_signal):
    execution = MaintenanceTaskExecutionFactory()
    ended = record_signal(signals.executions_ended)
    with transaction.atomic():
        MaintenanceTaskExecution.objects.filter(pk=execution.pk).fail("nope")
        assert len(ended) == 0
    assert len(ended) == 1


def test_no_execution_terminated_when_the_transaction_rolls_back(record_signal):
    execution = MaintenanceTaskExecutionFactory()
    terminated = record_signal(signals.execution_terminated)

    def terminate_then_roll_back():
        with transaction.atomic():
            assert len(MaintenanceTaskExecution.objects.all().terminate("stuck")) == 1
            raise Rollback

    with pytest.raises(Rollback):
        terminate_then_roll_back()

    assert len(terminated) == 0
    assert MaintenanceTaskExecution.objects.get(pk=execution.pk).terminated_at is None


def test_execution_terminated_gives_the_ended_execution(record_signal):
    state = MaintenanceTaskFactory(nid="give-back")
    execution = MaintenanceTaskExecutionFactory(maintenance_task=state, instruction="17")
    terminated = record_signal(signals.execution_terminated, sender=MaintenanceTaskExecution)
    ended = record_signal(signals.executions_ended)

    MaintenanceTaskExecution.objects.filter(pk=execution.pk).terminate("operator said so")

    [call] = terminated.items
    assert call["reason"] == "operator said so"
    given = call["execution"]
    assert given.pk == execution.pk
    assert given.instruction == "17"
    assert given.state == ExecutionState.COMPLETED
    assert given.terminated_reason == "operator said so"
    assert given.maintenance_task.nid == "give-back"
    assert [call["task_ids"] for call in ended.items] == [{state.pk}]


def test_execution_terminated_is_sent_by_the_registered_task(make_task, record_signal):
    task = make_task("registered")
    mine = MaintenanceTaskExecutionFactory(maintenance_task__nid="registered")
    theirs = MaintenanceTaskExecutionFactory(maintenance_task__nid="not-registered-here")
    for_task = record_signal(signals.execution_terminated, sender=task)
    for_model = record_signal(signals.execution_terminated, sender=MaintenanceTaskExecution)

    MaintenanceTaskExecution.objects.all().terminate("too slow")

    assert [(c["execution"].pk, c["task_name"], c["sender"]) for c in for_task.items] == [
        (mine.pk, "registered", task)
    ]
    assert [(c["execution"].pk, c["task_name"]) for c in for_model.items] == [
        (theirs.pk, "not-registered-here")
    ]


def test_schedule_failed_is_sent_after_the_rollback(make_task, make_runner):
    def schedule(context):
        Group.objects.create(name="claimed")
        raise LookupError("no luck")

    task = make_task("after-rollback", schedule)
    seen = []

    def receiver(sender, task_name, error, **kwargs):
        seen.append(
            (
                sender,
                task_name,
                error,
                connection.in_atomic_block,
                Group.objects.filter(name="claimed").exists(),
                MaintenanceTask.objects.get(nid=task_name).attempt_number,
            )
        )

    signals.schedule_failed.connect(receiver, sender=task, weak=False)
    try:
        make_runner([task]).run_once()
    finally:
        signals.schedule_failed.disconnect(receiver, sender=task)

    [(sender, task_name, error, in_atomic_block, claimed, attempt_number)] = seen
    assert sender is task
    assert task_name == "after-rollback"
    assert isinstance(error, LookupError)
    assert not in_atomic_block
    assert not claimed
    assert attempt_number == 1  # the failed attempt is already recorded


def test_a_receiver_can_complete_its_execution_as_a_worker_would(
    make_task, make_runner, scripted_schedule, record_signal
):
    task = make_task("worker", scripted_schedule(["1", "2"]), concurrency=2)
    ended = record_signal(signals.executions_ended)

    def work(sender, execution, instruction, **kwargs):
        with execution.tracking():
            if instruction == "2":
                raise ValueError("bad input")

    signals.task_dispatched.connect(work, sender=task, weak=False)
    try:
        make_runner([task]).run_once()
    finally:
        signals.task_dispatched.disconnect(work, sender=task)

    done, failed = MaintenanceTaskExecution.objects.order_by("instruction")
    assert done.state == failed.state == ExecutionState.COMPLETED
    assert done.error is None
    assert failed.error["type"] == "ValueError"
    task_id = MaintenanceTask.objects.get(nid="worker").pk
    assert [call["task_ids"] for call in ended.items] == [{task_id}, {task_id}]


def test_housekeeping_sends_execution_terminated_after_its_commit(make_runner, record_signal):
    state = MaintenanceTaskFactory(maximum_execution_duration=timedelta(seconds=1))
    execution = MaintenanceTaskExecutionFactory(
        maintenance_task=state, started_at=timezone.now() - timedelta(minutes=1)
    )
    seen = []

    def receiver(sender, execution, reason, **kwargs):
        seen.append(
            (
                connection.in_atomic_block,
                MaintenanceTaskExecution.objects.get(pk=execution.pk).terminated_reason,
            )
        )

    signals.execution_terminated.connect(receiver, weak=False)
    try:
        make_runner([]).housekeep()
    finally:
        signals.execution_terminated.disconnect(receiver)
    assert seen == [(False, "maximum execution duration exceeded")]
    assert not MaintenanceTaskExecution.objects.get(pk=execution.pk).is_running


def test_a_failing_receiver_is_logged_once_with_its_traceback_then_one_line_each(caplog):
    from django_planton.core import Task
    from django_planton.signals import send_and_log, task_dispatched

    task = Task("noisy", lambda context: [])
    message = f"the database went away ({uuid.uuid4().hex})"  # the process's error log is shared

    def broken(sender, **kwargs):
        raise ConnectionError(message)

    task_dispatched.connect(broken, sender=task, weak=False)
    try:
        for _ in range(3):
            errors = send_and_log(
                task_dispatched,
                sender=task,
                task_name="noisy",
                instruction="1",
                execution=SimpleNamespace(instruction="1"),
            )
            assert [str(error) for error in errors] == [message]
    finally:
        task_dispatched.disconnect(broken, sender=task)

    ours = [r for r in caplog.records if r.name == "django_planton"]
    assert [r.exc_info is not None for r in ours] == [True, False, False]
    assert ours[0].getMessage().startswith("A receiver of task_dispatched failed for task noisy")
    assert "the same error 3 times" in ours[2].getMessage()
    # Django's own send_robust() line would double every record: it is left to us.
    assert not [r for r in caplog.records if r.name == "django.dispatch"]
