"""A failed cycle records its attempt before any other runner can see the task as due.

The user's code runs in a savepoint; on failure only that rolls back and the
failed attempt is written on the task's row while it is still locked. A
second runner (a second process, here a thread with its own connection)
trying the same task in that moment must find the row locked and skip,
instead of calling the failing schedule again at once.

Row locks are what is tested, so this runs on PostgreSQL and MariaDB; on
SQLite the second runner would wait for the write lock instead of skipping.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from django_planton import signals
from django_planton.models import MaintenanceTask
from django_planton.runner import DatabaseCycleRunner
from django_planton.runner.writes import AttemptWriter

pytestmark = [
    pytest.mark.skipif(
        connection.vendor == "sqlite", reason="row locks: PostgreSQL and MariaDB only"
    ),
    pytest.mark.django_db(transaction=True),
]


def test_no_other_runner_retries_a_failing_task_while_its_failure_is_recorded(
    make_task, make_runner, record_signal, in_other_thread, monkeypatch
):
    calls: list[int] = []

    def failing(context: Any) -> list[str]:
        calls.append(context.attempt_number)
        raise RuntimeError("the mail server is down")

    task = make_task("flaky", failing, delay=lambda attempt_number: 60.0 * attempt_number)
    failed = record_signal(signals.schedule_failed, sender=task)
    runner = make_runner([task])
    other = DatabaseCycleRunner(hostname="other-host")
    seen_by_the_other: list[Any] = []
    record_failure = AttemptWriter._record_failure

    def record_failure_while_another_runner_tries(self, *args: Any, **kwargs: Any) -> Any:
        if self is runner.cycle_runner._writer:
            seen_by_the_other.append(in_other_thread(lambda: other.run(task)))
        return record_failure(self, *args, **kwargs)

    monkeypatch.setattr(AttemptWriter, "_record_failure", record_failure_while_another_runner_tries)

    [report] = runner.run_once()

    assert [type(error) for error in report.errors] == [RuntimeError]
    assert calls == [0], "the other runner called the failing schedule again"
    [other_report] = seen_by_the_other
    assert other_report.errors == ()
    assert other_report.delay == other.poll_interval  # the row was locked: look again later
    row = MaintenanceTask.objects.get(nid="flaky")
    assert row.attempt_number == 1
    assert row.last_error.split("\n")[0] == "RuntimeError: the mail server is down"
    assert len(failed) == 1

    # Afterwards the other runner sees the recorded attempt: not due for a minute.
    later = other.run(task)
    assert calls == [0]
    assert later.delay >= 29  # capped by PLANTON_MAX_WAIT (30 s)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="only PostgreSQL aborts a transaction on an error"
)
def test_a_schedule_that_swallows_a_database_error_fails_its_cycle(
    make_task, make_runner, record_signal
):
    from django.contrib.auth.models import Group
    from django.db import DatabaseError

    def careless(context: Any) -> list[str]:
        Group.objects.create(name="claimed-before-the-error")
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT * FROM no_such_table")
        except DatabaseError:
            pass  # the transaction is aborted all the same
        return ["1"]

    task = make_task("careless", careless, delay=lambda attempt_number: 60.0 * attempt_number)
    failed = record_signal(signals.schedule_failed, sender=task)

    [report] = make_runner([task]).run_once()

    assert report.instructions == ()
    assert len(failed) == 1
    row = MaintenanceTask.objects.get(nid="careless")
    assert row.attempt_number == 1
    assert "caught a database error" in row.last_error
    assert not row.executions.exists()
    assert not Group.objects.filter(name="claimed-before-the-error").exists()
