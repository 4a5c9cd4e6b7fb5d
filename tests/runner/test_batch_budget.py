"""A slow schedule holds up only itself: a batch's time budget, and slow tasks attempted alone."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import OperationalError, connection
from django.test import override_settings
from django.utils import timezone

from django_planton.models import MaintenanceTask
from django_planton.runner import DatabaseCycleRunner, sync_tasks

pytestmark = pytest.mark.django_db(transaction=True)

BUDGET = 0.05


def sleeping(seconds: float, calls: list[str], name: str):
    def schedule(context):
        calls.append(name)
        time.sleep(seconds)
        return []

    return schedule


@override_settings(PLANTON_BATCH_TIME_BUDGET=BUDGET)
def test_the_tasks_a_batch_has_no_time_left_for_go_back_due_and_untouched(make_task):
    calls: list[str] = []
    slow = make_task("slow", sleeping(BUDGET * 3, calls, "slow"), delay=30.0)
    others = [make_task(f"idle-{n}", sleeping(0, calls, f"idle-{n}"), delay=30.0) for n in range(3)]
    sync_tasks([slow, *others])
    runner = DatabaseCycleRunner(hostname="test-host")

    reports = runner.run_batch([slow, *others])

    assert calls == ["slow"]
    assert reports[0].waiting is None
    assert reports[0].delay == pytest.approx(30.0, abs=1)
    for report in reports[1:]:
        assert report.delay == 0.0
        assert report.waiting is not None
        assert report.waiting.startswith("left out of a batch that ran ")
    rows = MaintenanceTask.objects.filter(nid__in=[t.name for t in others])
    assert set(rows.values_list("attempt_number", flat=True)) == {0}
    assert set(rows.values_list("last_attempted_at", flat=True)) == {None}
    assert MaintenanceTask.objects.get(nid="slow").attempt_number == 1


@override_settings(PLANTON_BATCH_TIME_BUDGET=BUDGET)
def test_a_task_whose_schedule_ran_over_the_budget_is_attempted_alone_until_fast_again(make_task):
    calls: list[str] = []
    pace = {"seconds": BUDGET * 2}

    def schedule(context):
        calls.append("moody")
        time.sleep(pace["seconds"])
        return []

    moody = make_task("moody", schedule, delay=0.0)
    sync_tasks([moody])
    runner = DatabaseCycleRunner(hostname="test-host")
    assert runner.wakeups.is_quiet("moody")

    runner.run(moody)
    assert not runner.wakeups.is_quiet("moody")  # never batched while slow

    pace["seconds"] = 0.0
    runner.run(moody)
    assert runner.wakeups.is_quiet("moody")
    assert calls == ["moody", "moody"]


@override_settings(PLANTON_BATCH_TIME_BUDGET=60.0)
def test_within_the_budget_every_task_of_the_batch_is_attempted(make_task):
    calls: list[str] = []
    tasks = [make_task(f"idle-{n}", sleeping(0, calls, f"idle-{n}"), delay=30.0) for n in range(5)]
    sync_tasks(tasks)

    reports = DatabaseCycleRunner(hostname="test-host").run_batch(tasks)

    assert calls == [t.name for t in tasks]
    assert all(report.waiting is None for report in reports)


@pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="SQLite: every cycle holds the database's write lock, a slow one included",
)
@override_settings(PLANTON_BATCH_TIME_BUDGET=BUDGET, PLANTON_POLL_INTERVAL=0.05)
def test_a_running_loop_keeps_attempting_the_other_tasks_while_one_schedule_is_slow(
    make_task, make_runner
):
    """After the slow schedule's first run, the quiet tasks never wait for it again."""
    attempts: dict[str, list[float]] = {"slow": [], "quick": []}

    def slow(context):
        attempts["slow"].append(time.monotonic())
        time.sleep(0.5)
        return []

    def quick(context):
        attempts["quick"].append(time.monotonic())
        return []

    tasks = [make_task("slow", slow, delay=0.05), make_task("quick", quick, delay=0.05)]
    runner = make_runner(tasks, max_workers=2, batch_size=10, start=True)
    time.sleep(2.5)
    runner.stop(timeout=5)

    quick_times = attempts["quick"]
    assert len(attempts["slow"]) >= 2
    later = [t for t in quick_times if t > attempts["slow"][0] + 0.6]
    gaps = [b - a for a, b in itertools.pairwise(later)]
    assert gaps, quick_times
    assert max(gaps) < 0.4, f"the quick task waited {max(gaps):.2f}s between attempts"


# -- a schedule stuck in the database is cut at the budget (PostgreSQL, MariaDB) ---------

servers_only = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite: a statement is never cut (see runner.cutter)"
)


def database_sleep(seconds: float) -> None:
    """A slow query, as the database sees it."""
    sql = "SELECT pg_sleep(%s)" if connection.vendor == "postgresql" else "SELECT SLEEP(%s)"
    with connection.cursor() as cursor:
        cursor.execute(sql, [seconds])
        row = cursor.fetchone()
    if connection.vendor == "mysql" and row and row[0] == 1:
        # MariaDB's SLEEP() returns 1 when KILL QUERY interrupts it, rather than raising.
        raise OperationalError("SLEEP() was interrupted")


@servers_only
@override_settings(PLANTON_BATCH_TIME_BUDGET=0.3)
def test_a_schedule_stuck_in_a_query_is_cut_and_its_claims_roll_back(make_task):
    def stuck(context):
        Group.objects.create(name="claimed-by-stuck")
        database_sleep(20)
        return ["never"]

    blocker = make_task("stuck", stuck, delay=30.0)
    others = [make_task(f"idle-{n}", delay=30.0) for n in range(2)]
    sync_tasks([blocker, *others])
    runner = DatabaseCycleRunner(hostname="test-host")

    began = time.monotonic()
    reports = runner.run_batch([blocker, *others])
    took = time.monotonic() - began

    assert took < 5, f"the batch waited {took:.1f}s for the stuck schedule"
    assert reports[0].delay == 0.0
    assert reports[0].errors == ()
    assert reports[0].waiting is not None
    assert reports[0].waiting.startswith("cut from its batch after ")
    assert not Group.objects.filter(name="claimed-by-stuck").exists()
    assert MaintenanceTask.objects.get(nid="stuck").attempt_number == 0  # not a failed attempt
    assert not runner.wakeups.is_quiet("stuck")  # attempted alone next
    for report in reports[1:]:
        assert report.errors == ()


class StuckBatch:
    """A batch of ``[stuck, other]`` run by runner r1 in its own thread; r2 waits for the other.

    ``stuck``'s schedule sleeps 6 s in the database. :meth:`seconds_until_free`
    says how long r2 had to wait before ``other``'s row was no longer held
    (r2 then attempts it, or finds it attempted or not due).
    """

    def __init__(self, make_task: Any, in_other_thread: Any, other_name: str) -> None:
        self.sleeping = threading.Event()

        def stuck_schedule(context: Any) -> list[str]:
            self.sleeping.set()
            database_sleep(6)
            return []

        self.stuck = make_task("stuck", stuck_schedule, delay=30.0)
        self.other = make_task(other_name, delay=30.0)
        sync_tasks([self.stuck, self.other])
        self.outcome: list[object] = []
        self._in_other_thread = in_other_thread

    def _run(self) -> None:
        batch = [self.stuck, self.other]
        try:
            runner = DatabaseCycleRunner(hostname="r1")
            self.outcome.extend(self._in_other_thread(lambda: runner.run_batch(batch)))
        except Exception as error:
            self.outcome.append(error)

    def seconds_until_free(self) -> float | None:
        thread = threading.Thread(target=self._run, daemon=True)
        other = DatabaseCycleRunner(hostname="r2")
        thread.start()
        assert self.sleeping.wait(5)  # the batch holds both rows now
        began = time.monotonic()
        freed = None
        while time.monotonic() - began < 8:
            if other.run(self.other).waiting != "attempted by another runner":
                freed = time.monotonic() - began
                break
            time.sleep(0.05)
        thread.join(10)
        assert len(self.outcome) == 2, self.outcome  # the batch ran: a report per task
        return freed


@servers_only
@override_settings(PLANTON_BATCH_TIME_BUDGET=0.3)
def test_another_runner_gets_the_batchs_other_tasks_within_the_budget(make_task, in_other_thread):
    """The issue's case: one stuck schedule kept its batch's rows locked on every runner."""
    freed = StuckBatch(make_task, in_other_thread, "quick").seconds_until_free()
    assert freed is not None
    assert freed < 2.0, f"the quick task's row was locked for {freed:.1f}s"


@servers_only
@override_settings(PLANTON_BATCH_TIME_BUDGET=0.3)
def test_a_lone_due_schedule_is_cut_too_when_its_batch_holds_other_rows(make_task, in_other_thread):
    """Only one task of the batch is due, but the batch locked the others' rows as well."""
    batch = StuckBatch(make_task, in_other_thread, "resting")
    MaintenanceTask.objects.filter(nid="resting").update(
        next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    freed = batch.seconds_until_free()
    assert freed is not None
    assert freed < 2.0, f"the resting task's row was locked for {freed:.1f}s"
