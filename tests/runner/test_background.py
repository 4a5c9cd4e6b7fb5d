"""The Runner in the background: worker threads, wake-ups, two runners on one database.

Every test here is transactional: cycles commit for real, signals are sent
from ``on_commit`` and background runners work on connections of their own.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from django_planton import signals
from django_planton.executors import Inline, Threads
from django_planton.models import MaintenanceTask, MaintenanceTaskExecution

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory
from .helpers import executions_of, instructions_of, row

pytestmark = pytest.mark.django_db(transaction=True)


# -- the runner in the background -----------------------------------------------------------


def test_start_dispatches_in_the_background_and_stop_ends_cleanly(
    make_task, make_runner, scripted_schedule, record_signal, wait_until
):
    task = make_task("background", scripted_schedule(["a"], ["b"], ["c"]), concurrency=3)
    dispatched = record_signal(signals.task_dispatched, sender=task)
    receivers_before = list(signals.executions_ended.receivers)

    runner = make_runner([task], start=True, housekeeping_interval=0.05)

    assert wait_until(lambda: len(dispatched) == 3)
    assert sorted(call["instruction"] for call in dispatched.items) == ["a", "b", "c"]
    assert runner.planton.is_running
    assert runner.stop(timeout=5) is True
    assert not runner.planton.is_running
    assert signals.executions_ended.receivers == receivers_before
    assert wait_until(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("planton-")]
    ), [t.name for t in threading.enumerate()]
    assert sorted(instructions_of("background")) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("executor", "thread_name"),
    [(None, "planton-receiver"), (Threads(), "planton-receiver"), (Inline(), "planton-worker")],
    ids=["default", "Threads", "Inline"],
)
def test_receivers_run_in_the_executors_threads(
    make_task, make_runner, scripted_schedule, wait_until, executor, thread_name
):
    task = make_task("threads", scripted_schedule(["a"]), executor=executor)
    threads = []

    def receiver(sender, **kwargs):
        threads.append(threading.current_thread().name)

    signals.task_dispatched.connect(receiver, sender=task, weak=False)
    try:
        make_runner([task], start=True)
        assert wait_until(lambda: threads)
    finally:
        signals.task_dispatched.disconnect(receiver, sender=task)
    assert threads[0].startswith(thread_name)


def test_the_background_runner_terminates_and_prunes(
    make_task, make_runner, record_signal, wait_until
):
    task = make_task("slow")
    state = MaintenanceTaskFactory(nid="slow", maximum_execution_duration=timedelta(seconds=1))
    overdue = MaintenanceTaskExecutionFactory(
        maintenance_task=state, started_at=timezone.now() - timedelta(seconds=5)
    )
    old = MaintenanceTaskExecutionFactory(
        maintenance_task=state, started_at=timezone.now() - timedelta(days=30), completed=True
    )
    terminated = record_signal(signals.execution_terminated)

    make_runner([task], start=True, housekeeping_interval=0.05)

    assert wait_until(lambda: len(terminated) == 1)
    overdue.refresh_from_db()
    assert overdue.terminated_reason == "maximum execution duration exceeded"
    # The first round of housekeeping also prunes (then once a minute).
    assert wait_until(lambda: not MaintenanceTaskExecution.objects.filter(pk=old.pk).exists())


def test_a_freed_slot_wakes_the_task_at_once(
    make_task, make_runner, scripted_schedule, record_signal, wait_until
):
    # After work the task waits 30 s; only the wake-up can refill the slot sooner.
    task = make_task("wake", scripted_schedule(["a"], ["b"], ["c"]), concurrency=1, delay=30.0)
    dispatched = record_signal(signals.task_dispatched, sender=task)
    make_runner([task], start=True)
    assert wait_until(lambda: len(dispatched) == 1)
    assert instructions_of("wake") == ["a"]

    started = time.monotonic()
    assert MaintenanceTaskExecution.objects.get(instruction="a").complete()

    assert wait_until(lambda: len(dispatched) == 2, timeout=5)
    assert time.monotonic() - started < 5
    assert [call["instruction"] for call in dispatched.items] == ["a", "b"]

    dispatched[1]["execution"].fail("gave up")
    assert wait_until(lambda: len(dispatched) == 3, timeout=5)
    assert [e.instruction for e in MaintenanceTaskExecution.objects.running()] == ["c"]


def test_a_task_row_deleted_in_the_admin_is_recreated_and_still_woken(
    make_task, make_runner, scripted_schedule, record_signal, settings, wait_until
):
    settings.PLANTON_MAX_WAIT = 0.1  # re-read the row often, so the deletion is seen soon
    task = make_task("phoenix", scripted_schedule(["a"], ["b"], ["c"]), concurrency=1, delay=30.0)
    dispatched = record_signal(signals.task_dispatched, sender=task)
    make_runner([task], start=True)
    assert wait_until(lambda: len(dispatched) == 1)
    old_pk = row("phoenix").pk

    MaintenanceTask.objects.filter(nid="phoenix").delete()  # its executions go with it

    # The runner brings the row back (a new id), due at once: "b" is dispatched.
    assert wait_until(lambda: len(dispatched) == 2)
    assert row("phoenix").pk != old_pk
    # Ending "b" wakes the task under its new id; without the wake-up it would wait 30 s.
    assert MaintenanceTaskExecution.objects.get(instruction="b").complete()
    assert wait_until(lambda: len(dispatched) == 3, timeout=5)
    assert instructions_of("phoenix") == ["b", "c"]


def test_an_idle_task_is_not_woken(make_task, make_runner, scripted_schedule, wait_until):
    idle_schedule = scripted_schedule()
    idle = make_task("idle", idle_schedule, delay=30.0)
    busy = make_task("busy", scripted_schedule(["a"], ["b"]), delay=30.0)
    runner = make_runner([idle, busy], start=True)
    cycles = []
    original_run_batch = runner.cycle_runner.run_batch

    def logged_run_batch(tasks, *args, **kwargs):
        started = time.monotonic()
        reports = original_run_batch(tasks, *args, **kwargs)
        cycles.extend((task.name, started) for task in tasks)
        return reports

    # Every attempt, alone or in a batch, goes through run_batch.
    runner.cycle_runner.run_batch = logged_run_batch
    assert wait_until(lambda: len(idle_schedule.contexts) == 1 and instructions_of("busy"))
    assert wait_until(lambda: row("idle").attempt_number == 1)
    idle_row = row("idle")
    idle_execution = MaintenanceTaskExecutionFactory(maintenance_task=idle_row)

    woken_at = time.monotonic()
    # One statement ends an execution of each task: both tasks are woken.
    ended = MaintenanceTaskExecution.objects.filter(
        pk__in=[idle_execution.pk, executions_of("busy")[0].pk]
    ).complete()
    assert ended == 2

    assert wait_until(lambda: instructions_of("busy") == ["a", "b"])
    # Give the idle task's woken cycle time to run (it finds the task not due).
    wait_until(lambda: any(n == "idle" and t >= woken_at for n, t in cycles), timeout=2)
    assert len(idle_schedule.contexts) == 1
    assert row("idle").attempt_number == 1
    assert row("idle").last_attempted_at == idle_row.last_attempted_at


# -- two runners, one database -------------------------------------------------------------


def test_two_runners_share_one_concurrency_on_any_database(
    make_task, make_runner, make_workers, running_sampler, most_at_once, settings, wait_until
):
    # The PostgreSQL module runs this at scale; here it is small enough for SQLite,
    # whose runners take turns through the database's write lock.
    settings.PLANTON_POLL_INTERVAL = 0.01
    jobs, concurrency = 40, 3
    Group.objects.bulk_create([Group(name=f"job-{n:03d}") for n in range(jobs)])

    def claim(context):
        pending = Group.objects.filter(name__startswith="job-").exclude(
            pk__in=[int(i) for i in context.active_task_instructions]
        )
        return list(pending.order_by("pk").values_list("pk", flat=True)[: context.limit])

    def work(execution_pk: int, group_pk: int) -> None:
        with transaction.atomic():
            Group.objects.filter(pk=group_pk).delete()
            MaintenanceTaskExecution.objects.filter(pk=execution_pk).complete()

    task = make_task("claim", claim, concurrency=concurrency, delay=0.005)
    workers = make_workers(4, work)
    sampler = running_sampler("claim")

    def hand_to_worker(sender, execution, **kwargs):
        workers.submit(execution.pk, int(execution.instruction))

    signals.task_dispatched.connect(hand_to_worker, sender=task, weak=False)
    try:
        make_runner([task], hostname="runner-a", start=True)
        make_runner([task], hostname="runner-b", start=True)
        assert wait_until(
            lambda: (
                not Group.objects.filter(name__startswith="job-").exists()
                and not MaintenanceTaskExecution.objects.running().exists()
            ),
            timeout=30,
        )
    finally:
        signals.task_dispatched.disconnect(hand_to_worker, sender=task)
    samples = sampler.stop()
    workers.stop()

    assert workers.errors == []
    executions = executions_of("claim")
    assert sorted(int(e.instruction) for e in executions) == sorted(
        {int(e.instruction) for e in executions}
    )
    assert len(executions) == jobs
    assert max(samples) <= concurrency
    assert most_at_once(executions) <= concurrency
