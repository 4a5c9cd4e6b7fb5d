"""Ending an execution survives a short outage: complete(), fail() and heartbeat() retry.

Against a real server behind a relay that refuses connections (and cuts the
open ones) for a second, then forwards again.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.db import OperationalError, transaction
from django.test import override_settings

from django_planton.models import FailingInstruction, MaintenanceTaskExecution

from ..factories import MaintenanceTaskExecutionFactory

pytestmark = pytest.mark.django_db(transaction=True)

OUTAGE = 1.0


def outage(relay, seconds: float = OUTAGE) -> None:
    """Refuse now, forward again ``seconds`` later."""
    relay.set_mode("refuse")
    threading.Timer(seconds, relay.set_mode, ["forward"]).start()


def test_complete_during_an_outage_succeeds_once_the_database_is_back(relayed_database, caplog):
    execution = MaintenanceTaskExecutionFactory()
    outage(relayed_database)

    began = time.monotonic()
    assert execution.complete() is True
    took = time.monotonic() - began

    assert OUTAGE * 0.8 <= took < OUTAGE + 6
    stored = MaintenanceTaskExecution.objects.get(pk=execution.pk)
    assert stored.ended_at is not None
    assert stored.error is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once, not once per try
    assert warnings[0].startswith(f"Execution {execution.pk}: complete(): the database connection")


def test_fail_during_an_outage_records_the_error_and_holds_the_instruction_back(
    relayed_database,
):
    execution = MaintenanceTaskExecutionFactory()
    outage(relayed_database)

    assert execution.fail(RuntimeError("mail server refused")) is True

    stored = MaintenanceTaskExecution.objects.get(pk=execution.pk)
    assert stored.error["message"] == "mail server refused"
    failing = FailingInstruction.objects.get(instruction=execution.instruction)
    assert failing.failures == 1


def test_heartbeat_during_an_outage(relayed_database):
    execution = MaintenanceTaskExecutionFactory()
    outage(relayed_database)
    assert execution.heartbeat() is True


def test_a_queryset_complete_during_an_outage(relayed_database):
    executions = MaintenanceTaskExecutionFactory.create_batch(3)
    outage(relayed_database)
    ids = [execution.pk for execution in executions]
    assert MaintenanceTaskExecution.objects.filter(pk__in=ids).complete() == 3


@override_settings(PLANTON_ENDING_RETRY_SECONDS=0)
def test_with_retries_off_the_error_is_raised_at_once(relayed_database):
    execution = MaintenanceTaskExecutionFactory()
    relayed_database.set_mode("refuse")
    began = time.monotonic()
    with pytest.raises(OperationalError):
        execution.complete()
    assert time.monotonic() - began < 2


@override_settings(PLANTON_ENDING_RETRY_SECONDS=1.0)
def test_an_outage_longer_than_the_retries_raises(relayed_database):
    execution = MaintenanceTaskExecutionFactory()
    relayed_database.set_mode("refuse")
    began = time.monotonic()
    with pytest.raises(OperationalError):
        execution.complete()
    assert 0.5 <= time.monotonic() - began < 3


def test_nothing_is_retried_inside_the_callers_transaction(relayed_database):
    execution = MaintenanceTaskExecutionFactory()
    began = time.monotonic()
    raised = []
    try:
        with transaction.atomic():
            MaintenanceTaskExecution.objects.filter(pk=execution.pk).exists()
            relayed_database.set_mode("refuse")
            execution.complete()
    except OperationalError as error:
        raised.append(error)
    assert raised, "complete() inside a broken transaction did not raise"
    assert time.monotonic() - began < 2


def test_an_error_of_the_statement_itself_is_not_retried(relayed_database, monkeypatch):
    execution = MaintenanceTaskExecutionFactory()
    calls = []

    def refused(self, *, error):
        calls.append(error)
        raise OperationalError("deadlock detected")  # the connection stays usable

    monkeypatch.setattr(MaintenanceTaskExecution, "_end", refused)
    with pytest.raises(OperationalError, match="deadlock"):
        execution.complete()
    assert len(calls) == 1
