"""Several runners on one PostgreSQL database: one concurrency, one cadence, wake-ups across them.

PostgreSQL only: these tests rely on row locks (``SELECT ... FOR UPDATE SKIP
LOCKED``), LISTEN/NOTIFY and server processes that can be ended. The work is
``auth.Group`` rows named ``job-...`` that a task claims and a pool of worker
threads (or the test app's workers, in subprocesses) deletes, completing the
execution in the same transaction.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection, connections, transaction
from django.utils import timezone

from django_planton import signals
from django_planton.models import MaintenanceTask, MaintenanceTaskExecution

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="row locks and LISTEN/NOTIFY: PostgreSQL only"
    ),
    pytest.mark.django_db(transaction=True),
]

JOBS = 300
CONCURRENCY = 8


def make_jobs(count: int = JOBS) -> None:
    Group.objects.bulk_create([Group(name=f"job-{n:04d}") for n in range(count)])


def claim_jobs(context) -> list[int]:
    active = [int(instruction) for instruction in context.active_task_instructions]
    jobs = (
        Group.objects.filter(name__startswith="job-")
        .exclude(pk__in=active)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return list(jobs[: context.limit])


def claim_delay(attempt_number: int) -> float:
    return 0.002 if attempt_number == 0 else 0.02


def assert_every_job_done_once(task_name: str, samples: list[int], most_at_once) -> list:
    executions = list(MaintenanceTaskExecution.objects.for_task(task_name))
    instructions = [execution.instruction for execution in executions]
    assert len(instructions) == JOBS
    assert len(set(instructions)) == JOBS, "an instruction was dispatched twice"
    assert not Group.objects.filter(name__startswith="job-").exists()
    assert all(execution.error is None for execution in executions)
    assert samples, "the sampler took no samples"
    assert max(samples) <= CONCURRENCY, max(samples)
    peak = most_at_once(executions)
    assert peak <= CONCURRENCY
    assert peak >= 2, "the work never ran concurrently: the test proves nothing"
    return executions


# -- two runners in this process ------------------------------------------------------


def test_two_runners_share_one_concurrency(
    make_task, make_runner, make_workers, running_sampler, most_at_once, settings, wait_until
):
    settings.PLANTON_POLL_INTERVAL = 0.01  # a runner that finds the row locked looks again soon
    task = make_task("claim", claim_jobs, concurrency=CONCURRENCY, delay=claim_delay)

    def work(execution_pk: int, group_pk: int) -> None:
        time.sleep(0.001)
        with transaction.atomic():
            Group.objects.filter(pk=group_pk).delete()
            MaintenanceTaskExecution.objects.filter(pk=execution_pk).complete()

    workers = make_workers(8, work)

    def hand_to_worker(sender, execution, **kwargs):
        workers.submit(execution.pk, int(execution.instruction))

    sampler = running_sampler("claim")
    signals.task_dispatched.connect(hand_to_worker, sender=task, weak=False)
    try:
        make_runner([task], hostname="runner-a", start=True)
        make_runner([task], hostname="runner-b", start=True)
        make_jobs()  # once both runners run, so that both can claim some
        done = wait_until(
            lambda: (
                not Group.objects.filter(name__startswith="job-").exists()
                and not MaintenanceTaskExecution.objects.running().exists()
            ),
            timeout=60,
        )
    finally:
        signals.task_dispatched.disconnect(hand_to_worker, sender=task)
        samples = sampler.stop()
        workers.stop()
    assert done, Group.objects.filter(name__startswith="job-").count()
    assert workers.errors == []

    executions = assert_every_job_done_once("claim", samples, most_at_once)
    hosts = {execution.hostname for execution in executions}
    assert hosts == {f"runner-a:{os.getpid()}", f"runner-b:{os.getpid()}"}


def test_two_run_planton_processes_share_one_concurrency_and_one_cadence(
    planton_process, subprocess_database_url, running_sampler, most_at_once, wait_until
):
    """Two processes work through the jobs; meanwhile both also run an idle task every 0.2 s."""
    attempts = Group.objects.filter(name__startswith="attempt-")
    sampler = running_sampler("testapp_claim_jobs")
    processes = []
    try:
        for name in ("process-a", "process-b"):
            processes.append(
                planton_process(
                    ["run_planton", "--task", "testapp_claim_jobs", "--task", "testapp_idle"],
                    subprocess_database_url,
                    PLANTON_TEST_CONCURRENCY=str(CONCURRENCY),
                    PLANTON_TEST_HOSTNAME=name,
                    PLANTON_TEST_RECORD_ATTEMPTS="1",
                    PLANTON_TEST_IDLE_DELAY="0.2",
                )
            )
        for process in processes:
            assert process.wait_for_output("Scheduling 2 task(s)"), process.stderr
        make_jobs()  # once both processes run, so that both can claim some
        window_started, attempts_before = time.monotonic(), attempts.count()
        done = wait_until(
            lambda: (
                not Group.objects.filter(name__startswith="job-").exists()
                and not MaintenanceTaskExecution.objects.running().exists()
                and time.monotonic() - window_started >= 2.0
            ),
            timeout=60,
        )
        window = time.monotonic() - window_started
        attempts_during = attempts.count() - attempts_before
    finally:
        samples = sampler.stop()
    assert done, Group.objects.filter(name__startswith="job-").count()
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        assert process.wait(timeout=15) == 0, process.stderr
        assert "Traceback" not in process.stderr, process.stderr

    executions = assert_every_job_done_once("testapp_claim_jobs", samples, most_at_once)
    # Which process wins the row lock for a cycle is not promised (in a burst
    # this short, one often takes every cycle); one concurrency and one
    # cadence across both are.
    hosts = {execution.hostname.rpartition(":")[0] for execution in executions}
    assert hosts <= {"process-a", "process-b"}
    # One shared clock: about window / 0.2 attempts of the idle task in all,
    # where two processes with clocks of their own would make twice as many.
    one_clock = window / 0.2
    assert 3 <= attempts_during <= one_clock * 1.5 + 2, (attempts_during, window)


# -- one cadence --------------------------------------------------------------------------


def test_three_runners_keep_one_cadence(make_task, make_runner):
    attempts = []

    def schedule(context):
        attempts.append(time.monotonic())
        return []

    task = make_task("cadence", schedule, delay=0.2)
    started = time.monotonic()
    runners = [make_runner([task], hostname=f"runner-{n}", start=True) for n in range(3)]
    time.sleep(2.0)  # the window being measured
    for runner in runners:
        assert runner.stop(timeout=5)

    # One clock: about 2.0 / 0.2 + 1 = 11 attempts in the window; three runners
    # that each kept their own would make about 33.
    in_window = [at for at in attempts if at - started <= 2.0]
    assert 3 <= len(in_window) <= 16, len(in_window)
    assert MaintenanceTask.objects.get(nid="cadence").attempt_number == len(attempts)


# -- wake-ups across processes ------------------------------------------------------------


def test_ending_an_execution_notifies_listeners(in_other_thread):
    import psycopg

    state = MaintenanceTaskFactory(nid="notified")
    first, second = MaintenanceTaskExecutionFactory.create_batch(2, maintenance_task=state)
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute("LISTEN django_planton_ended")

        # A heartbeat ends nothing: no notification.
        in_other_thread(lambda: MaintenanceTaskExecution.objects.all().heartbeat())
        assert list(listener.notifies(timeout=0.2)) == []

        in_other_thread(lambda: MaintenanceTaskExecution.objects.filter(pk=first.pk).complete())
        payloads = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
        assert payloads == [str(state.pk)]

        # Ended in a transaction that rolls back: nothing is sent.
        def rolled_back():
            with transaction.atomic():
                MaintenanceTaskExecution.objects.filter(pk=second.pk).complete()
                transaction.set_rollback(True)

        in_other_thread(rolled_back)
        assert list(listener.notifies(timeout=0.2)) == []


def test_an_execution_ended_by_another_process_wakes_the_runner(
    make_task, make_runner, scripted_schedule, record_signal, wait_until
):
    # After work the task waits 30 s; only a wake-up refills its slot sooner.
    task = make_task("remote", scripted_schedule(["a"], ["b"]), concurrency=1, delay=30.0)
    dispatched = record_signal(signals.task_dispatched, sender=task)
    runner = make_runner([task], start=True)
    assert wait_until(lambda: len(dispatched) == 1)
    assert runner.listener is not None
    assert runner.listener.listening.wait(5)

    # As another process would: plain SQL, no signal in this process.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE maintenance_task_execution SET state = 'COMPLETED', ended_at = now() "
            "WHERE instruction = 'a'"
        )

    assert wait_until(lambda: len(dispatched) == 2, timeout=5)
    assert dispatched[1]["instruction"] == "b"


def test_a_recreated_task_row_is_woken_by_other_processes(
    make_task, make_runner, scripted_schedule, record_signal, settings, wait_until
):
    settings.PLANTON_MAX_WAIT = 0.1  # re-read the row often, so the deletion is seen soon
    task = make_task("phoenix", scripted_schedule(["a"], ["b"], ["c"]), concurrency=1, delay=30.0)
    dispatched = record_signal(signals.task_dispatched, sender=task)
    runner = make_runner([task], start=True)
    assert wait_until(lambda: len(dispatched) == 1)
    assert runner.listener.listening.wait(5)
    MaintenanceTask.objects.filter(nid="phoenix").delete()
    assert wait_until(lambda: len(dispatched) == 2)  # the row is back, with a new id

    with connection.cursor() as cursor:  # as another process would: no signal here
        cursor.execute(
            "UPDATE maintenance_task_execution SET state = 'COMPLETED', ended_at = now() "
            "WHERE instruction = 'b'"
        )

    assert wait_until(lambda: len(dispatched) == 3, timeout=5)


# -- lost connections --------------------------------------------------------------------


def terminate_other_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_a_background_runner_survives_its_connections_being_killed(
    make_task, make_runner, settings, record_signal, wait_until, caplog
):
    settings.PLANTON_POLL_INTERVAL = 0.05
    counter = iter(range(1_000_000))
    task = make_task("survivor", lambda context: [next(counter)], concurrency=1_000_000, delay=0.02)
    dispatched = record_signal(signals.task_dispatched, sender=task)
    runner = make_runner([task], start=True, housekeeping_interval=0.05)
    assert wait_until(lambda: len(dispatched) >= 3)
    assert runner.listener.listening.wait(5)

    killed_at = timezone.now()
    assert terminate_other_backends() >= 2  # a worker, the housekeeper, the listener
    before = len(dispatched)

    assert wait_until(lambda: len(dispatched) >= before + 5, timeout=15)

    # The listener listens again, on a new connection.
    def new_listeners() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'LISTEN %%' AND backend_start > %s",
                [killed_at],
            )
            return cursor.fetchone()[0]

    assert wait_until(new_listeners, timeout=15) == 1
    assert runner.stop(timeout=5)


# -- terminating while a cycle holds the task's row -------------------------------------------


@pytest.fixture
def task_row_held():
    """Hold a task's row locked in another transaction, as a cycle in flight does."""
    release = threading.Event()
    threads = []

    def hold(name: str) -> None:
        locked = threading.Event()

        def target() -> None:
            try:
                with transaction.atomic():
                    MaintenanceTask.objects.select_for_update().get(nid=name)
                    locked.set()
                    release.wait(30)
            finally:
                connection.close()

        thread = threading.Thread(target=target, name="test-row-holder")
        thread.start()
        threads.append(thread)
        assert locked.wait(10)

    yield hold
    release.set()
    for thread in threads:
        thread.join(10)


def test_a_cycle_skips_a_task_whose_row_another_runner_holds(
    make_task, make_runner, scripted_schedule, task_row_held
):
    schedule = scripted_schedule(["a"])
    task = make_task("held", schedule)
    runner = make_runner([task])
    MaintenanceTaskFactory(nid="held")
    task_row_held("held")

    started = time.monotonic()
    report = runner.cycle_runner.run(task)

    assert time.monotonic() - started < 5  # skipped, not waited for
    assert report.errors == ()
    assert report.delay == runner.cycle_runner.poll_interval
    assert len(schedule.contexts) == 0
    assert not MaintenanceTaskExecution.objects.exists()


def test_terminate_of_a_plain_queryset_ignores_the_task_row_lock(task_row_held):
    state = MaintenanceTaskFactory(nid="busy")
    execution = MaintenanceTaskExecutionFactory(maintenance_task=state)
    task_row_held("busy")
    ended = MaintenanceTaskExecution.objects.filter(pk=execution.pk).terminate("operator")
    assert [e.pk for e in ended] == [execution.pk]


def test_housekeeping_terminates_overdue_executions_while_a_cycle_holds_the_task_row(
    make_runner, task_row_held
):
    state = MaintenanceTaskFactory(nid="busy", maximum_execution_duration=timedelta(seconds=1))
    overdue = MaintenanceTaskExecutionFactory(
        maintenance_task=state, started_at=timezone.now() - timedelta(minutes=1)
    )
    task_row_held("busy")

    make_runner([]).housekeep()

    overdue.refresh_from_db()
    assert overdue.terminated_at is not None


def test_terminate_with_select_related_ignores_the_task_row_lock(task_row_held):
    state = MaintenanceTaskFactory(nid="busy")
    execution = MaintenanceTaskExecutionFactory(maintenance_task=state)
    task_row_held("busy")
    queryset = MaintenanceTaskExecution.objects.select_related("maintenance_task")
    ended = queryset.filter(pk=execution.pk).terminate("operator")
    assert [e.pk for e in ended] == [execution.pk]


def test_nothing_else_holds_connections_to_the_test_database():
    # Every runner, worker and listener of this module closed its connection.
    def others() -> int:
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]

    deadline = time.monotonic() + 5
    while others() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert others() == 0
