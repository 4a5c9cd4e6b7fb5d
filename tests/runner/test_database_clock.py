"""Every stored or compared time comes from the database, whatever this host's clock says.

``time_machine`` moves Python's clock (``time.time``, ``datetime.now``) ten
minutes off; the database server's clock is untouched. The monotonic clock
is not moved either, which is what :class:`DatabaseClock` carries time
forward on. PostgreSQL and MariaDB only: SQLite runs in the process, so
django-planton takes its time from Python (at microseconds, where SQLite's
own "now" keeps milliseconds), and a host off by ten minutes is the
database off by ten minutes.

Every test here is transactional: cycles commit for real.
"""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone

from django_planton import backoff
from django_planton.models import FailingInstruction, MaintenanceTask, MaintenanceTaskExecution
from django_planton.sql import DatabaseClock, TaskReads, read_database_now
from django_planton.sql import clock as clock_module
from django_planton.sql.clock import to_datetime

from ..factories import MaintenanceTaskFactory
from .helpers import executions_of, row

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor == "sqlite", reason="SQLite's clock is the process's clock"
    ),
]

OFF = timedelta(minutes=10)
#: How far apart two readings of one clock, a few statements apart, may be.
NEAR = timedelta(seconds=5)


def database_now() -> datetime:
    return read_database_now("default")


def near(value: datetime, expected: datetime) -> bool:
    return abs(value - expected) <= NEAR


def python_clock_off(offset: timedelta) -> time_machine.travel:
    """Python's clock moved ``offset`` away from the database's, and still ticking."""
    return time_machine.travel(database_now() + offset, tick=True)


@pytest.fixture(params=[OFF, -OFF], ids=["ahead", "behind"])
def offset(request) -> timedelta:
    return request.param


def test_the_python_clock_really_is_off(offset):
    # The premise of every other test here, on every database.
    with python_clock_off(offset):
        assert not near(timezone.now(), database_now())
        assert near(timezone.now(), database_now() + offset)


# -- what a cycle stores --------------------------------------------------------------


def test_a_cycle_stamps_with_the_databases_clock(make_task, make_runner, scripted_schedule, offset):
    task = make_task("stamped", scripted_schedule(["a"]), delay=5.0)
    runner = make_runner([task])

    with python_clock_off(offset):
        before = database_now()
        [report] = runner.run_once()
        after = database_now()
        python_now = timezone.now()

    assert report.instructions == ("a",)
    [execution] = executions_of("stamped")
    state = row("stamped")
    for stamp in (execution.started_at, execution.created_at, state.last_attempted_at):
        assert before - NEAR <= stamp <= after + NEAR
        assert not near(stamp, python_now)
    assert state.last_dispatched_at == execution.started_at
    assert abs(state.next_attempt_at - state.last_attempted_at - timedelta(seconds=5)) < NEAR
    assert near(state.next_attempt_at, after + timedelta(seconds=5))


def test_whether_a_task_is_due_is_decided_by_the_databases_clock(
    make_task, make_runner, scripted_schedule, offset
):
    schedule = scripted_schedule(["a"])
    task = make_task("due", schedule)
    # Due in a minute by the database; a Python clock ten minutes ahead would
    # call it due, one ten minutes behind would not call it due after a minute.
    MaintenanceTaskFactory(nid="due", next_attempt_at=database_now() + timedelta(minutes=1))
    runner = make_runner([task])

    with python_clock_off(offset):
        [report] = runner.run_once()

    assert report.waiting is not None
    assert report.waiting.startswith("not due until ")
    assert len(schedule.contexts) == 0

    row_ = row("due")
    row_.next_attempt_at = database_now() - timedelta(seconds=1)
    row_.save(update_fields=["next_attempt_at"])
    with python_clock_off(offset):
        [report] = runner.run_once()
    assert report.instructions == ("a",)


def test_cron_delays_count_from_the_databases_clock(make_task, make_runner):
    # Python's clock half a minute off the whole minutes of the database's: a
    # cron match found by Python's clock would be stored half a minute off one.
    task = make_task("minutely", delay=backoff.cron("* * * * *"))
    runner = make_runner([task])

    with python_clock_off(OFF + timedelta(seconds=30)):
        [report] = runner.run_once()  # finds nothing: waits for the next match

    assert report.errors == ()
    state = row("minutely")
    assert state.attempt_number == 1
    due = state.next_attempt_at
    whole_minute = due.replace(second=0, microsecond=0)
    off_by = min(due - whole_minute, whole_minute + timedelta(minutes=1) - due)
    assert off_by < timedelta(seconds=1), due
    assert timedelta(0) < due - state.last_attempted_at <= timedelta(minutes=1)


# -- housekeeping -------------------------------------------------------------------------


def test_a_host_clock_ahead_terminates_no_fresh_execution(
    make_task, make_runner, scripted_schedule
):
    task = make_task("fresh", scripted_schedule(["a"]))
    runner = make_runner([task])
    runner.run_once()
    [execution] = executions_of("fresh")
    assert execution.maintenance_task.maximum_execution_duration == timedelta(minutes=5)

    with python_clock_off(OFF):
        # By this host's clock the execution is ten minutes old, past its five.
        assert MaintenanceTaskExecution.objects.overdue(now=timezone.now()).exists()
        assert not MaintenanceTaskExecution.objects.overdue().exists()
        runner.housekeep()

    execution.refresh_from_db()
    assert execution.is_running
    assert execution.terminated_at is None
    assert not FailingInstruction.objects.exists()


def test_an_execution_overdue_by_the_databases_clock_is_terminated_whatever_the_host_says(
    make_task, make_runner, scripted_schedule
):
    task = make_task("old", scripted_schedule(["a"]))
    runner = make_runner([task])
    runner.run_once()
    [execution] = executions_of("old")
    MaintenanceTaskExecution.objects.filter(pk=execution.pk).update(
        started_at=database_now() - timedelta(minutes=6)
    )

    with python_clock_off(-OFF):
        # Four minutes old by this host's clock, six by the database's.
        assert not MaintenanceTaskExecution.objects.overdue(now=timezone.now()).exists()
        runner.housekeep()

    execution.refresh_from_db()
    assert execution.terminated_at is not None
    assert near(execution.ended_at, database_now())


# -- complete(), heartbeat(), fail() ----------------------------------------------------


@pytest.fixture
def execution(make_task, make_runner, scripted_schedule) -> MaintenanceTaskExecution:
    task = make_task("worked", scripted_schedule(["a"]))
    make_runner([task]).run_once()
    [execution] = executions_of("worked")
    return execution


def stored(execution: MaintenanceTaskExecution, field: str) -> datetime:
    return MaintenanceTaskExecution.objects.values_list(field, flat=True).get(pk=execution.pk)


def test_heartbeat_stamps_the_databases_time_and_loads_it_on_access(
    execution, offset, django_assert_num_queries
):
    with python_clock_off(offset):
        assert execution.heartbeat()
        python_now = timezone.now()
        assert "last_seen_at" not in execution.__dict__  # set by the database, not read back
        with django_assert_num_queries(1):
            seen = execution.last_seen_at
        with django_assert_num_queries(0):
            assert execution.last_seen_at == seen

    assert seen == stored(execution, "last_seen_at")
    assert near(seen, database_now())
    assert not near(seen, python_now)


def test_complete_stamps_the_databases_time_and_loads_it_on_access(
    execution, offset, django_assert_num_queries
):
    with python_clock_off(offset):
        assert execution.complete()
        assert execution.state == "COMPLETED"
        assert execution.error is None
        assert "ended_at" not in execution.__dict__
        with django_assert_num_queries(1):
            ended = execution.ended_at
        # ``duration`` compares two times of the database's.
        assert timedelta(0) <= execution.duration < NEAR

    assert ended == stored(execution, "ended_at")
    assert execution.last_seen_at == stored(execution, "last_seen_at") == ended
    assert near(ended, database_now())
    assert not execution.is_running
    assert not execution.heartbeat()  # ended: no heartbeat any more


def test_fail_stamps_the_databases_time_on_the_execution_and_the_hold(execution, offset):
    with python_clock_off(offset):
        assert execution.fail("no")
        python_now = timezone.now()

    assert execution.ended_at == stored(execution, "ended_at")
    assert near(execution.ended_at, database_now())
    assert not near(execution.ended_at, python_now)
    held = FailingInstruction.objects.get()
    assert held.last_failed_at == execution.ended_at
    assert held.retry_at - held.last_failed_at == timedelta(seconds=10)


def test_queryset_endings_stamp_the_databases_time(make_task, make_runner, scripted_schedule):
    task = make_task("bulk", scripted_schedule(["a", "b", "c"]), concurrency=3)
    make_runner([task]).run_once()
    a, b, c = executions_of("bulk")

    with python_clock_off(OFF):
        python_now = timezone.now()
        assert MaintenanceTaskExecution.objects.filter(pk=a.pk).heartbeat() == 1
        assert MaintenanceTaskExecution.objects.filter(pk=b.pk).complete() == 1
        assert MaintenanceTaskExecution.objects.filter(pk=c.pk).fail("no") == 1

    now = database_now()
    for stamp in (stored(a, "last_seen_at"), stored(b, "ended_at"), stored(c, "ended_at")):
        assert near(stamp, now)
        assert not near(stamp, python_now)
    assert near(FailingInstruction.objects.get().last_failed_at, now)


# -- the cycle runner's clock ---------------------------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def monotonic(monkeypatch) -> FakeMonotonic:
    """The monotonic clock the database clock carries time on, moved by hand."""
    fake = FakeMonotonic()
    monkeypatch.setattr(clock_module, "time", types.SimpleNamespace(monotonic=fake))
    return fake


def test_the_clock_carries_an_observed_time_forward_without_a_query(
    monotonic, django_assert_num_queries
):
    clock = DatabaseClock("default", max_age=60.0)
    observed = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)

    clock.observe(observed)
    with django_assert_num_queries(0):
        assert clock.now() == observed
        monotonic.value += 12.5
        assert clock.now() == observed + timedelta(seconds=12.5)
        monotonic.value += 47.5  # 60 s: still young enough
        assert clock.now() == observed + timedelta(seconds=60)


def test_the_clock_reads_the_database_again_after_max_age(monotonic, django_assert_num_queries):
    clock = DatabaseClock("default", max_age=60.0)
    clock.observe(datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC))
    monotonic.value += 60.5

    with django_assert_num_queries(1):
        now = clock.now()

    assert near(now, database_now())
    # That reading is the new observation, carried forward in turn.
    monotonic.value += 3
    with django_assert_num_queries(0):
        assert clock.now() == now + timedelta(seconds=3)


def test_the_clock_reads_the_database_when_nothing_was_observed(django_assert_num_queries):
    clock = DatabaseClock("default")
    with python_clock_off(OFF), django_assert_num_queries(1):
        now = clock.now()
    assert near(now, database_now())


def test_a_cycle_observes_the_time_of_its_lock_statement(
    make_task, make_runner, django_assert_num_queries
):
    task = make_task("observed")
    runner = make_runner([task])
    clock = runner.cycle_runner.clock

    runner.run_once()  # creates the row
    with python_clock_off(OFF):
        runner.cycle_runner.run(task)
        with django_assert_num_queries(0):
            now = clock.now()

    assert near(now, database_now())


@pytest.mark.django_db(transaction=True)
def test_a_cycle_held_up_on_its_way_does_not_store_its_next_attempt_late(
    make_task, relayed_database
):
    """A database that stops answering for a while must not push the cadence by that while."""
    import threading

    from django.db import connection as default_connection

    from django_planton.runner import DatabaseCycleRunner, sync_tasks

    task = make_task("held_up", delay=1.0)
    sync_tasks([task])
    runner = DatabaseCycleRunner(hostname="test-host")
    read_database_now("default")  # the connection is open: its next statement is held
    relayed_database.set_mode("blackhole")
    threading.Timer(2.0, relayed_database.set_mode, ["forward"]).start()

    runner.run(task)

    with default_connection.cursor() as cursor:
        cursor.execute("SELECT next_attempt_at FROM maintenance_task WHERE nid = %s", ["held_up"])
        (next_attempt_at,) = cursor.fetchone()
    ahead = (to_datetime(next_attempt_at) - read_database_now("default")).total_seconds()
    assert ahead <= 1.0 + 0.3, f"next_attempt_at is {ahead:.2f}s ahead; the delay is 1s"


def test_the_next_attempt_counts_from_the_write_not_from_a_lagging_clock(
    make_task, make_runner, scripted_schedule, monkeypatch
):
    # The cycle's clock is carried forward from its first statement; when that
    # statement ran long (a lock wait, a busy server) the clock lags the
    # database's. A next attempt counted from it would come early, and another
    # runner would attempt the task before its delay is up.
    task = make_task("cadence", scripted_schedule([]), delay=10.0)
    runner = make_runner([task])
    clock = runner.cycle_runner.clock
    lagging = clock.now
    monkeypatch.setattr(clock, "now", lambda: lagging() - timedelta(seconds=5))
    before = database_now()

    runner.run_once()

    state = row("cadence")
    assert state.next_attempt_at >= before + timedelta(seconds=10)
    assert state.next_attempt_at - state.last_attempted_at == timedelta(seconds=10)
    assert state.last_attempted_at >= before


def test_the_lock_read_gives_the_rows_times_as_the_orm_does():
    # The lock read parses times with psycopg's own loader on PostgreSQL.
    due = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC)
    MaintenanceTaskFactory(nid="timed", next_attempt_at=due)
    with transaction.atomic():
        rows, now = TaskReads("default").lock_tasks(["timed"])
    stored = MaintenanceTask.objects.get(nid="timed").next_attempt_at
    assert rows["timed"].next_attempt_at == stored == due
    assert rows["timed"].next_attempt_at.utcoffset() == timedelta(0)
    assert now is not None
    assert now.utcoffset() == timedelta(0)
    assert abs(now - read_database_now("default")) < timedelta(seconds=5)
