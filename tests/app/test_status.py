"""The fleet's status: each figure equals what the database's rows say.

The expected values are computed here from the rows through the ORM's own
named states (``succeeded()``, ``failed()``...), not through the code under
test, and the factories build rows at times relative to the database's clock.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta

import pytest
from django.db.models import Q

from django_planton import status
from django_planton.executors import Inline
from django_planton.models import MaintenanceTaskExecution
from django_planton.sql import read_database_now

from ..factories import (
    MaintenanceTaskExecutionFactory,
    MaintenanceTaskFactory,
    RunnerProcessFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return read_database_now("default")


def ago(now, **delta):
    return now - timedelta(**delta)


@pytest.fixture
def busy_task(now):
    """A task with executions of every outcome, in the last hour, the last day and before."""
    task = MaintenanceTaskFactory(nid="busy", concurrency=3)
    build = MaintenanceTaskExecutionFactory
    build(maintenance_task=task, started_at=ago(now, minutes=10))
    build(maintenance_task=task, started_at=ago(now, hours=3))  # running, started earlier
    for minutes in (5, 20, 30):
        build(maintenance_task=task, completed=True, started_at=ago(now, minutes=minutes))
    build(maintenance_task=task, failed=True, started_at=ago(now, minutes=15))
    build(maintenance_task=task, terminated=True, started_at=ago(now, minutes=40))
    build(maintenance_task=task, completed=True, started_at=ago(now, hours=5))
    build(maintenance_task=task, failed=True, started_at=ago(now, hours=7))
    build(maintenance_task=task, failed=True, started_at=ago(now, hours=30))
    build(maintenance_task=task, completed=True, started_at=ago(now, days=3))
    return task


def expected_counts(task, since):
    rows = MaintenanceTaskExecution.objects.filter(maintenance_task=task, started_at__gte=since)
    return status.OutcomeCounts(
        dispatched=rows.count(),
        succeeded=rows.succeeded().count(),
        failed=rows.failed().count(),
        terminated=rows.terminated().count(),
        running=rows.running().count(),
    )


def test_outcome_counts_of_the_last_hour_and_day_equal_the_rows(busy_task, now):
    found = status.task_status("busy")

    assert found.last_hour == expected_counts(busy_task, ago(now, hours=1))
    assert found.last_day == expected_counts(busy_task, ago(now, days=1))
    assert found.last_hour == status.OutcomeCounts(
        dispatched=6, succeeded=3, failed=1, terminated=1, running=1
    )
    assert found.last_day.dispatched == 9
    assert found.running == MaintenanceTaskExecution.objects.running().count() == 2
    oldest = MaintenanceTaskExecution.objects.running().order_by("started_at").first()
    assert found.oldest_running_started_at == oldest.started_at


def test_fleet_status_lists_every_task_with_its_own_figures(busy_task, now):
    quiet = MaintenanceTaskFactory(nid="quiet")
    MaintenanceTaskExecutionFactory(
        maintenance_task=quiet, failed=True, started_at=ago(now, minutes=3)
    )

    fleet = status.fleet_status()

    assert [task.name for task in fleet.tasks] == ["busy", "quiet"]
    by_name = {task.name: task for task in fleet.tasks}
    # The same figures as the one task's status, read a moment later (the lag grows).
    assert replace(by_name["busy"], lag_seconds=0) == replace(
        status.task_status("busy"), lag_seconds=0
    )
    assert by_name["quiet"].last_hour == expected_counts(quiet, ago(now, hours=1))
    assert by_name["quiet"].running == 0
    assert by_name["quiet"].oldest_running_started_at is None
    assert fleet.now >= now


def test_percentiles_come_from_the_durations_that_ended_in_the_last_day(now):
    task = MaintenanceTaskFactory(nid="timed")
    for seconds in range(1, 11):
        start = ago(now, minutes=30 + seconds)
        MaintenanceTaskExecutionFactory(
            maintenance_task=task,
            completed=True,
            started_at=start,
            ended_at=start + timedelta(seconds=seconds),
        )
    # Left out: terminated (the runner's limit, not a receiver's time), older, running.
    MaintenanceTaskExecutionFactory(
        maintenance_task=task, terminated=True, started_at=ago(now, minutes=9)
    )
    old = ago(now, days=2)
    MaintenanceTaskExecutionFactory(
        maintenance_task=task, completed=True, started_at=old, ended_at=old + timedelta(hours=1)
    )
    MaintenanceTaskExecutionFactory(maintenance_task=task, started_at=ago(now, hours=1))

    found = status.task_status("timed")

    durations = sorted(
        (row.ended_at - row.started_at).total_seconds()
        for row in MaintenanceTaskExecution.objects.filter(
            ~Q(terminated_at__isnull=False), ended_at__gte=ago(now, days=1)
        )
    )
    assert durations == [float(seconds) for seconds in range(1, 11)]
    assert found.p50_seconds == pytest.approx(5.5)
    assert found.p95_seconds == pytest.approx(9.55)


def test_percentiles_read_the_newest_sample_of_each_task(now, monkeypatch):
    monkeypatch.setattr(status.reading, "DURATION_SAMPLE", 3)
    for name in ("a", "b"):
        task = MaintenanceTaskFactory(nid=name)
        for seconds in range(1, 7):  # the newest executions are the quickest
            ended(task, ago(now, minutes=10 * seconds), seconds)
    # Fewer than 3 in the last hour: its sample is completed from the day.
    quiet = MaintenanceTaskFactory(nid="quiet")
    for hours, seconds in [(0.3, 5), (2, 1), (3, 2), (4, 50), (30, 100)]:
        ended(quiet, ago(now, hours=hours), seconds)

    tasks = status.fleet_status().tasks

    assert [(task.name, task.p50_seconds, task.p95_seconds) for task in tasks] == [
        ("a", 2.0, pytest.approx(2.9)),
        ("b", 2.0, pytest.approx(2.9)),
        ("quiet", 2.0, pytest.approx(4.7)),
    ]


def ended(task, started_at, seconds):
    MaintenanceTaskExecutionFactory(
        maintenance_task=task,
        completed=True,
        started_at=started_at,
        ended_at=started_at + timedelta(seconds=seconds),
    )


def test_no_duration_no_percentile():
    MaintenanceTaskFactory(nid="idle")
    found = status.task_status("idle")
    assert (found.p50_seconds, found.p95_seconds) == (None, None)
    assert status.task_status("no such task") is None


def test_percentile_interpolates():
    assert status.percentile([], 0.5) is None
    assert status.percentile([4.0], 0.95) == 4.0
    assert status.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


def test_effective_concurrency_is_the_override_when_set():
    MaintenanceTaskFactory(nid="declared", concurrency=4)
    MaintenanceTaskFactory(nid="overridden", concurrency=4, maximum_concurrent_execution_count=9)
    tasks = {task.name: task for task in status.fleet_status().tasks}
    assert tasks["declared"].concurrency == 4
    assert tasks["overridden"].concurrency == 9


def test_lag_is_how_long_past_due_by_the_database_clock(now):
    MaintenanceTaskFactory(nid="late", next_attempt_at=ago(now, seconds=90))
    MaintenanceTaskFactory(nid="early", next_attempt_at=now + timedelta(minutes=1))
    MaintenanceTaskFactory(nid="paused", is_paused=True, next_attempt_at=ago(now, hours=1))
    full = MaintenanceTaskFactory(nid="full", concurrency=1, next_attempt_at=ago(now, hours=1))
    MaintenanceTaskExecutionFactory(maintenance_task=full)

    tasks = {task.name: task for task in status.fleet_status().tasks}

    assert 90 <= tasks["late"].lag_seconds < 100
    assert tasks["early"].lag_seconds == 0
    assert tasks["paused"].lag_seconds == 0
    assert tasks["full"].lag_seconds == 0  # every slot taken: waiting, not late


def test_registered_flag_and_executor(make_task):
    make_task("in-code", executor=Inline())
    make_task("default-executor")
    for name in ("in-code", "default-executor", "gone"):
        MaintenanceTaskFactory(nid=name)

    tasks = {task.name: task for task in status.fleet_status().tasks}

    assert tasks["in-code"].registered
    assert tasks["in-code"].executor == "Inline()"
    assert tasks["default-executor"].executor.endswith("(PLANTON_EXECUTOR)")
    assert not tasks["gone"].registered
    assert tasks["gone"].executor is None


def test_last_error_and_its_time(now):
    MaintenanceTaskFactory(
        nid="broken",
        last_error="Traceback\nValueError: boom",
        last_attempted_at=ago(now, minutes=2),
    )
    MaintenanceTaskFactory(nid="fine", last_attempted_at=ago(now, minutes=2))
    tasks = {task.name: task for task in status.fleet_status().tasks}
    assert tasks["broken"].last_error_at == tasks["broken"].last_attempted_at
    assert tasks["fine"].last_error_at is None


def test_overdue_running_counts_executions_past_the_maximum_duration(now):
    task = MaintenanceTaskFactory(nid="slow", maximum_execution_duration=timedelta(minutes=5))
    MaintenanceTaskExecutionFactory(maintenance_task=task, started_at=ago(now, minutes=10))
    MaintenanceTaskExecutionFactory(maintenance_task=task, started_at=ago(now, minutes=7))
    MaintenanceTaskExecutionFactory(maintenance_task=task, started_at=ago(now, minutes=1))
    MaintenanceTaskExecutionFactory(
        maintenance_task=task, completed=True, started_at=ago(now, minutes=30)
    )

    found = status.task_status("slow")

    assert found.overdue_running == MaintenanceTaskExecution.objects.overdue().count() == 2


def test_runners_alive_or_dead_by_the_database_clock():
    alive = RunnerProcessFactory(hostname="a", tasks=[{"name": "t1", "executor": "Inline()"}])
    dead = RunnerProcessFactory(hostname="b", dead=True)

    runners = status.fleet_status().runners

    assert [(runner.hostname, runner.pid, runner.alive) for runner in runners] == [
        ("a", alive.pid, True),
        ("b", dead.pid, False),
    ]
    assert runners[0].tasks == ["t1"]
    assert runners[0].started_at == alive.started_at
    assert runners[0].last_seen_at == alive.last_seen_at
    assert runners[0].version == alive.version


def test_the_number_of_statements_does_not_grow_with_tasks(now, django_assert_max_num_queries):
    for index in range(30):
        task = MaintenanceTaskFactory(nid=f"task-{index:02}")
        MaintenanceTaskExecutionFactory(maintenance_task=task, started_at=ago(now, minutes=8))
        MaintenanceTaskExecutionFactory(
            maintenance_task=task, completed=True, started_at=ago(now, minutes=2)
        )
    RunnerProcessFactory()

    with django_assert_max_num_queries(7):
        fleet = status.fleet_status()

    assert len(fleet.tasks) == 30
    assert all(task.last_hour.dispatched == 2 for task in fleet.tasks)


def test_to_json_has_the_issue_keys_and_iso_times(busy_task):
    RunnerProcessFactory()
    document = status.fleet_status().to_json()
    assert set(document) == {"runners", "tasks"}
    assert set(document["runners"][0]) == {"hostname", "pid", "started_at", "last_seen_at", "alive"}
    task = document["tasks"][0]
    assert set(task) == {
        "name",
        "running",
        "concurrency",
        "paused",
        "attempt_number",
        "next_attempt_at",
        "lag_seconds",
        "last_dispatched_at",
        "last_error",
        "last_hour",
    }
    assert set(task["last_hour"]) == {"dispatched", "succeeded", "failed", "terminated"}
    assert isinstance(document["runners"][0]["started_at"], str)


def test_describe_seconds():
    assert status.describe_seconds(0.0421) == "42 ms"
    assert status.describe_seconds(4.25) == "4.2 s"
    assert status.describe_seconds(12) == "12 s"
    assert status.describe_seconds(59.9) == "1 min"
    assert status.describe_seconds(185) == "3 min"
    assert status.describe_seconds(-200) == "3 min"
    assert status.describe_seconds(2 * 3600 + 300) == "2 h 5 min"
    assert status.describe_seconds(5 * 86400) == "5 d"


# -- charts ---------------------------------------------------------------------------


def minute_of(moment):
    return moment.replace(second=0, microsecond=0)


def test_executions_per_minute_buckets_by_start_and_outcome(now):
    task = MaintenanceTaskFactory(nid="charted")
    five, two = ago(now, minutes=5), ago(now, minutes=2)
    MaintenanceTaskExecutionFactory(maintenance_task=task, completed=True, started_at=five)
    MaintenanceTaskExecutionFactory(maintenance_task=task, failed=True, started_at=five)
    MaintenanceTaskExecutionFactory(maintenance_task=task, started_at=two)
    MaintenanceTaskExecutionFactory(
        maintenance_task=task, completed=True, started_at=ago(now, hours=2)
    )

    series = status.executions_per_minute("charted", since=timedelta(hours=1))

    minutes = [start for start, _ in series]
    assert minutes[0] == minute_of(ago(now, hours=1))
    assert all(
        later - earlier == timedelta(minutes=1) for earlier, later in itertools.pairwise(minutes)
    )
    counts = dict(series)
    assert counts[minute_of(five)] == {"running": 0, "succeeded": 1, "failed": 1, "terminated": 0}
    assert counts[minute_of(two)]["running"] == 1
    assert sum(sum(bucket.values()) for bucket in counts.values()) == 3


def test_running_over_time_gives_the_peak_of_each_minute(now):
    task = MaintenanceTaskFactory(nid="charted")
    start = minute_of(ago(now, minutes=10))
    MaintenanceTaskExecutionFactory(
        maintenance_task=task,
        completed=True,
        started_at=start,
        ended_at=start + timedelta(minutes=3, seconds=30),
    )
    MaintenanceTaskExecutionFactory(
        maintenance_task=task, started_at=start + timedelta(minutes=2, seconds=10)
    )
    MaintenanceTaskExecutionFactory(
        maintenance_task=task,
        completed=True,
        started_at=ago(now, hours=3),
        ended_at=start - timedelta(minutes=5, seconds=1),
    )

    peaks = dict(status.running_over_time("charted", since=timedelta(minutes=30)))

    assert peaks[start - timedelta(minutes=6)] == 1  # the long one ends in this minute
    assert peaks[start - timedelta(minutes=5)] == 0
    assert peaks[start] == 1
    assert peaks[start + timedelta(minutes=2)] == 2
    assert peaks[start + timedelta(minutes=3)] == 2
    assert peaks[start + timedelta(minutes=4)] == 1
    assert peaks[minute_of(now)] == 1
