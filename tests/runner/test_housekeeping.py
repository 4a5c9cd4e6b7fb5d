"""Housekeeping: overdue executions are terminated, old completed ones pruned.

Every test here is transactional: cycles commit for real, signals are sent
from ``on_commit`` and background runners work on connections of their own.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from django_planton import signals
from django_planton.models import ExecutionState, MaintenanceTaskExecution

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory
from ..support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_a_failing_housekeeping_round_logs_its_traceback_once(caplog, monkeypatch):
    import threading
    import uuid

    from django.db import OperationalError

    from django_planton.runner.housekeeping import Housekeeper

    message = f"server closed the connection ({uuid.uuid4().hex})"
    rounds = []

    def failing(self, *, prune=True):
        rounds.append(1)
        raise OperationalError(message)

    monkeypatch.setattr(Housekeeper, "housekeep", failing)
    stopping = threading.Event()
    keeper = Housekeeper(using="default", interval=0.01, stopping=stopping)
    keeper.start()
    try:
        assert wait_until(lambda: len(rounds) >= 4)
    finally:
        stopping.set()
        keeper.thread.join(5)
    failed = [r for r in caplog.records if "Housekeeping failed" in r.getMessage()]
    assert len(failed) >= 4
    assert failed[0].exc_info is not None
    assert all(r.exc_info is None for r in failed[1:])
    assert "the same error" in failed[-1].getMessage()
