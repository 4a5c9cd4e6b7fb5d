"""The executions-ended trigger (PostgreSQL) and the endings that wake their runner in-process.

A completion NOTIFYs the other runners once per task and transaction; an
UPDATE that ends nothing (a heartbeat) is silent. A completion of a task
that a runner of the same process schedules is silent too: that runner
wakes itself through ``executions_ended`` (``notified=False``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from django_planton import signals
from django_planton.models import MaintenanceTaskExecution
from django_planton.sql import ENDED_CHANNEL

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the trigger and NOTIFY are PostgreSQL's"
)


@pytest.fixture
def ended_signals() -> Iterator[list[dict[str, Any]]]:
    """What ``executions_ended`` carried during the test."""
    sent: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        sent.append(kwargs)

    signals.executions_ended.connect(receiver, weak=False)
    yield sent
    signals.executions_ended.disconnect(receiver)


@pytest.fixture
def woken_here() -> Iterator[set[int]]:
    """Task ids registered as woken in this process for the test, forgotten afterwards."""
    ids: set[int] = set()
    yield ids
    signals.wake_here(ids, add=False)


@pytest.fixture
def notifications() -> Iterator[Any]:
    """A second connection that LISTENs on the ended channel; call it to read what arrived."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params["dbname"] = connection.settings_dict["NAME"]
    listener = psycopg.connect(**params, autocommit=True)
    listener.execute(f"LISTEN {ENDED_CHANNEL}")

    def received(wait: float = 0.5) -> list[str]:
        return [note.payload for note in listener.notifies(timeout=wait, stop_after=None)]

    yield received
    listener.close()


pytestmark = pytest.mark.django_db(transaction=True)


def test_wakes_in_process_follows_the_registrations(woken_here):
    assert not signals.wakes_in_process(123456)
    signals.wake_here({123456})
    signals.wake_here({123456})  # a second runner of the same process
    woken_here.add(123456)
    signals.wake_here({123456}, add=False)
    assert signals.wakes_in_process(123456)  # the other runner still wakes for it
    signals.wake_here({123456}, add=False)
    assert not signals.wakes_in_process(123456)
    woken_here.clear()


def test_a_completion_says_whether_the_other_processes_were_notified(ended_signals, woken_here):
    here, elsewhere = MaintenanceTaskFactory(nid="here"), MaintenanceTaskFactory(nid="elsewhere")
    signals.wake_here({here.pk})
    woken_here.add(here.pk)
    mine = MaintenanceTaskExecutionFactory(maintenance_task=here)
    theirs = MaintenanceTaskExecutionFactory(maintenance_task=elsewhere)
    mine.complete()
    theirs.complete()
    # Each names its instruction too: a runner's cycle may have seen it ended already.
    assert ended_signals == [
        {
            "signal": signals.executions_ended,
            "task_ids": {here.pk},
            "notified": False,
            "instructions": {here.pk: [mine.instruction]},
        },
        {
            "signal": signals.executions_ended,
            "task_ids": {elsewhere.pk},
            "notified": True,
            "instructions": {elsewhere.pk: [theirs.instruction]},
        },
    ]


@on_postgresql
def test_endings_notify_once_per_task_and_transaction_and_heartbeats_do_not(notifications):
    task, other = MaintenanceTaskFactory(nid="first"), MaintenanceTaskFactory(nid="second")
    executions = [MaintenanceTaskExecutionFactory(maintenance_task=task) for _ in range(3)]
    later = MaintenanceTaskExecutionFactory(maintenance_task=other)
    MaintenanceTaskExecution.objects.filter(pk=executions[0].pk).heartbeat()
    assert notifications() == []
    MaintenanceTaskExecution.objects.filter(pk__in=[e.pk for e in executions[:2]]).complete()
    assert notifications() == [str(task.pk)]
    executions[2].fail("broken")
    later.complete()
    assert notifications() == [str(task.pk), str(other.pk)]
    # Already ended: the UPDATE changes nothing, and nothing is sent.
    MaintenanceTaskExecution.objects.filter(pk=later.pk).update(ended_at=later.ended_at)
    assert notifications() == []


@on_postgresql
def test_a_completion_of_a_task_woken_here_notifies_no_one_else(notifications, woken_here):
    here, elsewhere = MaintenanceTaskFactory(nid="here"), MaintenanceTaskFactory(nid="elsewhere")
    signals.wake_here({here.pk})
    woken_here.add(here.pk)
    MaintenanceTaskExecutionFactory(maintenance_task=here).complete()
    assert notifications() == []
    MaintenanceTaskExecutionFactory(maintenance_task=elsewhere).complete()
    # A failure takes the general path, which always notifies.
    MaintenanceTaskExecutionFactory(maintenance_task=here).fail("broken")
    assert notifications() == [str(elsewhere.pk), str(here.pk)]
