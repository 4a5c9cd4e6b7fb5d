"""``manage.py planton_status`` through ``call_command``: the table, ``--json``, ``--check``.

One test per ``--check`` rule and one where all is well; the exit code 1
reaches the shell as ``SystemExit(1)`` (a real process in
``tests/integration/test_planton_status_process.py``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils.dateparse import parse_datetime

from django_planton.models import MaintenanceTask, MaintenanceTaskExecution, RunnerProcess
from django_planton.sql import read_database_now

from ..factories import (
    MaintenanceTaskExecutionFactory,
    MaintenanceTaskFactory,
    RunnerProcessFactory,
)

pytestmark = pytest.mark.django_db


def planton_status(*args: str) -> str:
    out = StringIO()
    call_command("planton_status", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def failing_check(*args: str) -> list[str]:
    """The problem lines of a ``--check`` that must exit 1."""
    out = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("planton_status", "--check", *args, stdout=out, stderr=StringIO())
    assert exited.value.code == 1
    return out.getvalue().splitlines()


@pytest.fixture
def now():
    return read_database_now("default")


@pytest.fixture
def healthy(make_task, now):
    """An alive runner and a registered task due in a minute: nothing to report."""
    RunnerProcessFactory(hostname="worker-1")
    make_task("healthy")
    return MaintenanceTaskFactory(nid="healthy", next_attempt_at=now + timedelta(minutes=1))


# -- --check ------------------------------------------------------------------------


def test_check_passes_when_all_is_well(healthy):
    output = planton_status("--check")
    assert output.strip() == "OK: 1 runner(s) alive, 1 task(s)."
    assert planton_status("--check", "-v", "0") == ""


def test_check_fails_without_an_alive_runner(make_task):
    RunnerProcessFactory(dead=True)
    assert failing_check() == ["No run_planton process is alive (the last one was seen 2 min ago)."]
    RunnerProcess.objects.all().delete()
    assert failing_check() == ["No run_planton process is alive (none has recorded itself)."]


def test_check_fails_when_a_registered_task_is_overdue(healthy, make_task, now):
    make_task("late")
    MaintenanceTaskFactory(nid="late", next_attempt_at=now - timedelta(minutes=3, seconds=5))
    # Not reported: paused, no longer registered, or late by less than --max-lag.
    make_task("paused")
    MaintenanceTaskFactory(nid="paused", is_paused=True, next_attempt_at=now - timedelta(hours=1))
    MaintenanceTaskFactory(nid="gone", next_attempt_at=now - timedelta(hours=1))
    make_task("slightly-late")
    MaintenanceTaskFactory(nid="slightly-late", next_attempt_at=now - timedelta(seconds=30))

    assert failing_check() == ["late: overdue by 3 min."]
    assert failing_check("--max-lag", "10") == [
        "late: overdue by 3 min.",
        "slightly-late: overdue by 30 s.",
    ]
    assert planton_status("--check", "--max-lag", "600").startswith("OK:")


def test_check_fails_when_a_task_s_last_attempt_failed(healthy, now):
    MaintenanceTaskFactory(
        nid="broken",
        last_error="Traceback (most recent call last):\n  ...\nValueError: no table",
        last_attempted_at=now - timedelta(minutes=4),
    )
    assert failing_check() == ["broken: the last attempt failed 4 min ago: ValueError: no table"]


def test_check_fails_when_an_execution_runs_past_its_maximum_duration(healthy, now):
    task = MaintenanceTaskFactory(nid="stuck", maximum_execution_duration=timedelta(minutes=5))
    MaintenanceTaskExecutionFactory(maintenance_task=task, started_at=now - timedelta(minutes=6))
    MaintenanceTaskExecutionFactory(maintenance_task=task, started_at=now - timedelta(minutes=1))
    assert failing_check() == ["stuck: 1 execution(s) running past the maximum duration of 5 min."]


# -- --json -------------------------------------------------------------------------


def test_json_values_equal_the_database_rows(healthy, now):
    runner = RunnerProcess.objects.get()
    task = MaintenanceTaskFactory(
        nid="busy",
        concurrency=2,
        maximum_concurrent_execution_count=5,
        attempt_number=3,
        next_attempt_at=now - timedelta(seconds=42),
        last_dispatched_at=now - timedelta(minutes=2),
        last_error="ValueError: boom",
    )
    MaintenanceTaskExecutionFactory(maintenance_task=task, started_at=now - timedelta(minutes=1))
    for trait in ("completed", "completed", "failed", "terminated"):
        MaintenanceTaskExecutionFactory(
            maintenance_task=task, started_at=now - timedelta(minutes=20), **{trait: True}
        )
    MaintenanceTaskExecutionFactory(
        maintenance_task=task, completed=True, started_at=now - timedelta(hours=2)
    )

    document = json.loads(planton_status("--json"))

    assert document["runners"] == [
        {
            "hostname": runner.hostname,
            "pid": runner.pid,
            "started_at": runner.started_at.isoformat(),
            "last_seen_at": runner.last_seen_at.isoformat(),
            "alive": True,
        }
    ]
    busy = next(entry for entry in document["tasks"] if entry["name"] == "busy")
    row = MaintenanceTask.objects.get(nid="busy")
    executions = MaintenanceTaskExecution.objects.filter(maintenance_task=row)
    hour = executions.filter(started_at__gte=now - timedelta(hours=1))
    assert busy == {
        "name": "busy",
        "running": executions.running().count(),
        "concurrency": row.effective_concurrency,
        "paused": row.is_paused,
        "attempt_number": row.attempt_number,
        "next_attempt_at": row.next_attempt_at.isoformat(),
        "lag_seconds": busy["lag_seconds"],
        "last_dispatched_at": row.last_dispatched_at.isoformat(),
        "last_error": row.last_error,
        "last_hour": {
            "dispatched": hour.count(),
            "succeeded": hour.succeeded().count(),
            "failed": hour.failed().count(),
            "terminated": hour.terminated().count(),
        },
    }
    assert busy["last_hour"] == {"dispatched": 5, "succeeded": 2, "failed": 1, "terminated": 1}
    assert busy["concurrency"] == 5
    assert 42 <= busy["lag_seconds"] < 52
    assert parse_datetime(busy["next_attempt_at"]) == row.next_attempt_at
    healthy_entry = next(entry for entry in document["tasks"] if entry["name"] == "healthy")
    assert healthy_entry["lag_seconds"] == 0
    assert healthy_entry["last_dispatched_at"] is None


# -- the table ----------------------------------------------------------------------


def test_table_shows_runners_and_tasks_with_relative_times(healthy, now):
    RunnerProcessFactory(hostname="worker-2", dead=True)
    MaintenanceTaskFactory(nid="late", next_attempt_at=now - timedelta(minutes=3, seconds=10))
    MaintenanceTaskFactory(nid="resting", is_paused=True)
    task = MaintenanceTaskFactory(nid="late")
    MaintenanceTaskExecutionFactory(
        maintenance_task=task,
        failed=True,
        started_at=now - timedelta(minutes=5),
    )

    output = planton_status()

    lines = output.splitlines()
    assert lines[0] == "Runners: 1 alive, 1 dead"
    assert lines[1].split() == ["HOST", "PID", "STATE", "STARTED", "LAST", "SEEN", "TASKS"]
    worker_1 = next(line for line in lines if "worker-1" in line)
    assert "alive" in worker_1
    assert "10 min ago" in worker_1
    assert "DEAD" in next(line for line in lines if "worker-2" in line)
    late = next(line for line in lines if line.strip().startswith("late"))
    assert "(not registered)" in late
    assert "overdue by 3 min" in late
    assert "0 ok, 1 failed, 0 terminated" in late
    assert "1.0 s / 1.0 s" in late
    healthy_line = next(line for line in lines if line.strip().startswith("healthy"))
    assert "in 1 min" in healthy_line
    assert "paused" in next(line for line in lines if line.strip().startswith("resting"))


def test_table_of_an_empty_database():
    assert planton_status().splitlines() == [
        "Runners: 0 alive, 0 dead",
        "  (none)",
        "",
        "Tasks: 0",
        "  (none)",
    ]


# -- options ------------------------------------------------------------------------


def test_unknown_database_alias_is_an_error():
    with pytest.raises(CommandError, match="Unknown database alias 'nope'"):
        planton_status("--database", "nope")


def test_json_and_check_do_not_go_together():
    with pytest.raises(CommandError, match="not allowed with argument"):
        planton_status("--json", "--check")


def test_max_lag_must_be_seconds():
    with pytest.raises(CommandError, match="must be a number of seconds"):
        planton_status("--check", "--max-lag", "-1")
