"""Runner rows: each started runner records itself in ``planton_runner`` and heartbeats.

A clean stop deletes the row; a row that missed three heartbeats is dead, and
the housekeeping of a runner that is itself steady ends the executions the
dead runner ran in its own process (``Inline``, ``Threads``), then prunes the
row an hour later. Transactional: the runners' threads work on connections
of their own.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from importlib.metadata import version

import pytest
from django.core.checks import run_checks
from django.test import override_settings
from django.utils import timezone

from django_planton import signals
from django_planton.executors import Executor, Inline, Threads
from django_planton.models import MaintenanceTaskExecution, RunnerProcess
from django_planton.runner.heartbeat import Heartbeat, describe_tasks

from ..factories import (
    MaintenanceTaskExecutionFactory,
    MaintenanceTaskFactory,
    RunnerProcessFactory,
)
from ..support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

FAST = 0.05  # seconds between heartbeats in these tests


class OutsideWorker(Executor):
    """Hands executions to another process, as DjangoTasks and Celery do."""

    def __repr__(self) -> str:
        return "OutsideWorker()"


@pytest.fixture
def fast_heartbeat():
    with override_settings(PLANTON_HEARTBEAT_INTERVAL=FAST, PLANTON_HOUSEKEEPING_INTERVAL=60):
        yield


# -- a runner's own row ----------------------------------------------------------------


@pytest.mark.usefixtures("fast_heartbeat")
def test_a_started_runner_records_itself(make_task, make_runner):
    inline = make_task("inline", executor=Inline())
    threads = make_task("threads", executor=Threads(max_workers=2))
    runner = make_runner([inline, threads], start=True)

    row = RunnerProcess.objects.get()
    assert row.pk == runner.heartbeat.row_id
    assert (row.hostname, row.pid) == ("test-host", os.getpid())
    assert row.identity == f"test-host:{os.getpid()}"
    assert row.tasks == [
        {"name": "inline", "executor": "Inline()", "in_process": True},
        {"name": "threads", "executor": "Threads(max_workers=2)", "in_process": True},
    ]
    assert row.version == version("django-planton")
    assert row.heartbeat_interval == FAST
    assert row.started_at <= row.last_seen_at
    assert row.dead_after - row.last_seen_at == timedelta(seconds=3 * FAST)
    assert list(RunnerProcess.objects.alive()) == [row]
    assert not RunnerProcess.objects.dead().exists()


@pytest.mark.usefixtures("fast_heartbeat")
def test_the_heartbeat_advances_last_seen_and_dead_after(make_task, make_runner):
    make_runner([make_task()], start=True)
    first = RunnerProcess.objects.get()

    assert wait_until(lambda: RunnerProcess.objects.get().last_seen_at > first.last_seen_at)
    later = RunnerProcess.objects.get()
    assert later.pk == first.pk
    assert later.started_at == first.started_at
    assert later.dead_after > first.dead_after


@pytest.mark.usefixtures("fast_heartbeat")
def test_a_clean_stop_deletes_the_row(make_task, make_runner):
    runner = make_runner([make_task()], start=True)
    assert RunnerProcess.objects.exists()

    assert runner.stop(timeout=10)

    assert not RunnerProcess.objects.exists()
    assert runner.heartbeat.thread is not None
    assert not runner.heartbeat.thread.is_alive()


@pytest.mark.usefixtures("fast_heartbeat")
def test_a_row_pruned_while_the_runner_lives_comes_back(make_task, make_runner):
    make_runner([make_task()], start=True)
    original = RunnerProcess.objects.get()
    original.delete()

    back = wait_until(lambda: RunnerProcess.objects.first())
    assert back is not None
    assert back.pk != original.pk
    assert back.identity == original.identity
    assert back.started_at == original.started_at


def test_a_stop_that_leaves_receivers_running_keeps_the_row(make_task):
    """Their executions are then ended by other runners once the row is dead."""
    heartbeat = Heartbeat(using="default", hostname="h", tasks=[make_task()], interval=FAST)
    heartbeat.start()
    heartbeat.stop(remove=False, timeout=10)
    assert RunnerProcess.objects.filter(pk=heartbeat.row_id).exists()
    assert wait_until(lambda: RunnerProcess.objects.dead().exists())


def test_once_records_no_row(make_task, make_runner):
    make_runner([make_task()]).run_once()
    assert not RunnerProcess.objects.exists()


def test_tasks_handed_to_an_outside_worker_are_not_in_process(make_task):
    outside = make_task("outside", executor=OutsideWorker())
    default = make_task("default")
    assert describe_tasks([outside, default]) == [
        {"name": "outside", "executor": "OutsideWorker()", "in_process": False},
        {"name": "default", "executor": "Threads(max_workers=None)", "in_process": True},
    ]


def test_a_failed_heartbeat_is_reported_and_retried(relayed_database, make_task, caplog):
    heartbeat = Heartbeat(using="default", hostname="h", tasks=[make_task()], interval=60)
    heartbeat.start()  # the thread's first beat is a minute away: the test beats
    try:
        first = RunnerProcess.objects.get()
        relayed_database.set_mode("refuse")
        with caplog.at_level(logging.ERROR, logger="django_planton"):
            for _ in range(3):
                heartbeat.beat()
        assert heartbeat.steady_for() == 0
        failed = [r for r in caplog.records if "Heartbeat of runner h:" in r.getMessage()]
        # The first beat finds its connection cut, the next ones cannot connect:
        # each error's traceback once, then one line.
        assert len(failed) == 3
        assert failed[0].exc_info is not None
        assert failed[-1].exc_info is None
        assert "the same error 2 times" in failed[-1].getMessage()

        relayed_database.set_mode("forward")
        heartbeat.beat()
        assert RunnerProcess.objects.get().last_seen_at > first.last_seen_at
    finally:
        heartbeat.stop(timeout=10)
    assert not RunnerProcess.objects.exists()


def test_the_heartbeat_interval_must_be_a_positive_number():
    with override_settings(PLANTON_HEARTBEAT_INTERVAL=0):
        errors = [m for m in run_checks() if "PLANTON_HEARTBEAT_INTERVAL" in m.msg]
    assert [error.id for error in errors] == ["django_planton.E001"]


# -- dead runners ------------------------------------------------------------------------


def test_a_row_past_dead_after_is_dead():
    alive = RunnerProcessFactory()
    dead = RunnerProcessFactory(dead=True)
    assert list(RunnerProcess.objects.alive()) == [alive]
    assert list(RunnerProcess.objects.dead()) == [dead]


def steady_runner(make_task, make_runner):
    """A started runner whose own heartbeat has been steady long enough to judge FAST rows."""
    runner = make_runner([make_task("idle", delay=60)], start=True)
    assert wait_until(lambda: runner.heartbeat.steady_for() >= 3 * FAST)
    return runner


@pytest.mark.usefixtures("fast_heartbeat")
def test_housekeeping_ends_what_a_dead_runner_ran_in_its_own_process(
    make_task, make_runner, record_signal
):
    dead = RunnerProcessFactory(
        dead=True,
        heartbeat_interval=FAST,
        tasks=[
            {"name": "mail", "executor": "Threads(max_workers=None)", "in_process": True},
            {"name": "inline", "executor": "Inline()", "in_process": True},
            {"name": "queued", "executor": "DjangoTasks(...)", "in_process": False},
        ],
    )
    started = dead.last_seen_at - timedelta(seconds=30)
    mail, inline, queued = (MaintenanceTaskFactory(nid=n) for n in ("mail", "inline", "queued"))
    ours = [
        MaintenanceTaskExecutionFactory(
            maintenance_task=task, hostname=dead.identity, started_at=started
        )
        for task in (mail, inline)
    ]
    handed_over = MaintenanceTaskExecutionFactory(
        maintenance_task=queued, hostname=dead.identity, started_at=started
    )
    others = MaintenanceTaskExecutionFactory(
        maintenance_task=mail, hostname="other-host:1", started_at=started
    )
    terminated = record_signal(signals.execution_terminated)
    runner = steady_runner(make_task, make_runner)

    runner.housekeep(prune=False)

    last_seen = dead.last_seen_at.isoformat(sep=" ", timespec="seconds")
    reason = f"runner {dead.identity} stopped heartbeating (last seen {last_seen})"
    for execution in ours:
        execution.refresh_from_db()
        assert execution.outcome == "terminated"
        assert execution.terminated_reason == reason
    assert sorted(call["execution"].pk for call in terminated.items) == [e.pk for e in ours]
    for execution in (handed_over, others):
        execution.refresh_from_db()
        assert execution.is_running
    assert RunnerProcess.objects.filter(pk=dead.pk).exists()  # shown as dead for a while


@pytest.mark.usefixtures("fast_heartbeat")
def test_a_later_runner_with_the_same_host_and_pid_keeps_its_executions(make_task, make_runner):
    """A container restarted: its new runner has its predecessor's host:pid."""
    dead = RunnerProcessFactory(
        dead=True,
        heartbeat_interval=FAST,
        tasks=[{"name": "mail", "executor": "Inline()", "in_process": True}],
    )
    successor = RunnerProcessFactory(
        hostname=dead.hostname,
        pid=dead.pid,
        tasks=dead.tasks,
        started_at=dead.last_seen_at + timedelta(seconds=30),
    )
    mail = MaintenanceTaskFactory(nid="mail")
    before = MaintenanceTaskExecutionFactory(
        maintenance_task=mail, hostname=dead.identity, started_at=dead.last_seen_at
    )
    after = MaintenanceTaskExecutionFactory(
        maintenance_task=mail,
        hostname=successor.identity,
        started_at=successor.started_at + timedelta(seconds=1),
    )
    runner = steady_runner(make_task, make_runner)

    runner.housekeep(prune=False)

    before.refresh_from_db()
    after.refresh_from_db()
    assert before.outcome == "terminated"
    assert after.is_running


@pytest.mark.usefixtures("fast_heartbeat")
def test_a_runner_judges_no_one_until_its_own_heartbeat_is_steady(make_task, make_runner):
    """After an outage every row looks dead: the survivors must have had time to beat."""
    slow = RunnerProcessFactory(
        dead=True,
        heartbeat_interval=3600,
        tasks=[{"name": "mail", "executor": "Inline()", "in_process": True}],
    )
    execution = MaintenanceTaskExecutionFactory(
        maintenance_task=MaintenanceTaskFactory(nid="mail"),
        hostname=slow.identity,
        started_at=slow.last_seen_at,
    )

    make_runner([make_task()]).run_once()  # no heartbeat of its own
    steady_runner(make_task, make_runner).housekeep(prune=False)  # steady for far less than 3 h

    execution.refresh_from_db()
    assert execution.is_running


def test_dead_rows_are_pruned_an_hour_after_their_death(make_runner):
    now = timezone.now()
    long_dead = RunnerProcessFactory(last_seen_at=now - timedelta(hours=2))
    lately_dead = RunnerProcessFactory(last_seen_at=now - timedelta(minutes=10))
    alive = RunnerProcessFactory()

    make_runner([]).housekeep()

    remaining = set(RunnerProcess.objects.values_list("pk", flat=True))
    assert remaining == {lately_dead.pk, alive.pk}
    assert long_dead.pk not in remaining


def test_executions_carry_the_identity_of_their_runner(make_task, make_runner, scripted_schedule):
    task = make_task("mail", scripted_schedule(["a"]))
    make_runner([task], hostname="box-1").run_once()
    [execution] = MaintenanceTaskExecution.objects.all()
    assert execution.hostname == RunnerProcess.identity_of("box-1", os.getpid())
