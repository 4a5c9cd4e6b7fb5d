"""Several tasks attempted in one transaction, and the lazy savepoint around each schedule.

A batch shares its round trips (lock, active instructions, writes, commit)
but each task keeps its own outcome: one failing schedule rolls back its own
claims and nothing else, and a schedule that sends no statement costs no
savepoint.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_planton import signals
from django_planton.executors import Inline
from django_planton.models import MaintenanceTask, MaintenanceTaskExecution
from django_planton.runner import DatabaseCycleRunner, sync_tasks

pytestmark = pytest.mark.django_db(transaction=True)


def row(name: str) -> MaintenanceTask:
    return MaintenanceTask.objects.get(nid=name)


def statements(queries: CaptureQueriesContext, word: str) -> list[str]:
    return [query["sql"] for query in queries.captured_queries if word in query["sql"].upper()]


def idle_tasks(make_task: Any, count: int, prefix: str = "idle") -> list[Any]:
    return [make_task(f"{prefix}-{number}", delay=30.0) for number in range(count)]


# -- shared round trips ----------------------------------------------------------


def test_a_batch_costs_the_same_statements_for_3_tasks_as_for_30(make_task):
    runner = DatabaseCycleRunner(hostname="test-host")
    few, many = idle_tasks(make_task, 3, "few"), idle_tasks(make_task, 30, "many")
    sync_tasks(few + many)

    counts = []
    for tasks in (few, many):
        with CaptureQueriesContext(connection) as queries:
            reports = runner.run_batch(tasks)
        assert [report.errors for report in reports] == [()] * len(tasks)
        counts.append(len(queries.captured_queries))

    assert counts[0] == counts[1]
    assert counts[1] <= 6  # lock, active, one UPDATE, BEGIN/COMMIT or write lock
    rows = MaintenanceTask.objects.filter(nid__in=[task.name for task in few + many])
    assert set(rows.values_list("attempt_number", flat=True)) == {1}


def test_a_schedule_that_sends_no_statement_takes_no_savepoint(make_task):
    task = make_task("quiet")
    sync_tasks([task])

    with CaptureQueriesContext(connection) as queries:
        [report] = DatabaseCycleRunner().run_batch([task])

    assert report.errors == ()
    assert statements(queries, "SAVEPOINT") == []


def test_a_schedule_that_queries_runs_behind_its_own_savepoint(make_task):
    def counting(context: Any) -> list[str]:
        Group.objects.count()
        return []

    task = make_task("counting", counting)
    sync_tasks([task])

    with CaptureQueriesContext(connection) as queries:
        [report] = DatabaseCycleRunner().run_batch([task])

    assert report.errors == ()
    savepoints = statements(queries, "SAVEPOINT")
    assert len(savepoints) == 2  # taken before the count, released after it
    assert "RELEASE" in savepoints[1].upper()
    sqls = [query["sql"] for query in queries.captured_queries]
    assert sqls.index(savepoints[0]) < next(
        index for index, sql in enumerate(sqls) if "auth_group" in sql
    )


def test_idle_tasks_with_different_attempt_numbers_each_count_one_more(make_task):
    tasks = idle_tasks(make_task, 3)
    sync_tasks(tasks)
    for number, task in enumerate(tasks):
        MaintenanceTask.objects.filter(nid=task.name).update(attempt_number=number * 5)

    DatabaseCycleRunner().run_batch(tasks)

    assert [row(task.name).attempt_number for task in tasks] == [1, 6, 11]


# -- one task's failure is its own ----------------------------------------------------


def test_a_failing_schedule_rolls_back_its_claims_and_nothing_else(make_task, record_signal):
    def claims_then_fails(context: Any) -> list[str]:
        Group.objects.create(name="claimed-by-the-failing-task")
        transaction.on_commit(lambda: committed.append("failing"))
        raise RuntimeError("the mail server is down")

    def claims(context: Any) -> list[str]:
        Group.objects.create(name="claimed-by-the-good-task")
        transaction.on_commit(lambda: committed.append("good"))
        return ["a", "b"]

    committed: list[str] = []
    # Inline: the receivers have run when run_batch returns.
    before = make_task("before", claims, concurrency=2, executor=Inline())
    failing = make_task("failing", claims_then_fails, delay=lambda n: 60.0 * n)
    idle = make_task("idle", delay=30.0)
    sync_tasks([before, failing, idle])
    dispatched = record_signal(signals.task_dispatched)
    failed = record_signal(signals.schedule_failed)

    reports = DatabaseCycleRunner(hostname="test-host").run_batch([before, failing, idle])

    assert [report.instructions for report in reports] == [("a", "b"), (), ()]
    assert [type(error) for error in reports[1].errors] == [RuntimeError]
    assert reports[0].errors == reports[2].errors == ()
    assert sorted(Group.objects.values_list("name", flat=True)) == ["claimed-by-the-good-task"]
    assert committed == ["good"]  # the failing task's on_commit went with its savepoint
    assert [call["instruction"] for call in dispatched] == ["a", "b"]
    assert [call["task_name"] for call in failed] == ["failing"]
    assert row("failing").attempt_number == 1
    assert row("failing").last_error.split("\n")[0] == "RuntimeError: the mail server is down"
    assert row("before").attempt_number == 0
    assert row("before").last_dispatched_at is not None
    assert row("idle").attempt_number == 1
    assert sorted(
        MaintenanceTaskExecution.objects.values_list("maintenance_task__nid", "instruction")
    ) == [("before", "a"), ("before", "b")]


def test_an_error_swallowed_inside_atomic_without_savepoint_fails_only_its_task(
    make_task, record_signal
):
    """Django marks the transaction broken; the task's savepoint mends it."""

    def swallows(context: Any) -> list[str]:
        Group.objects.create(name="claimed-before-the-error")
        try:
            with transaction.atomic(savepoint=False):
                Group.objects.create(name="claimed-before-the-error")  # unique name: fails
        except DatabaseError:
            pass
        return ["1"]

    careless = make_task("careless", swallows, delay=lambda n: 60.0 * n)
    after = make_task("after", lambda context: ["x"])
    sync_tasks([careless, after])
    failed = record_signal(signals.schedule_failed, sender=careless)

    reports = DatabaseCycleRunner(hostname="test-host").run_batch([careless, after])

    assert reports[0].instructions == ()
    assert len(failed) == 1
    assert reports[1].instructions == ("x",)
    assert not Group.objects.filter(name="claimed-before-the-error").exists()
    assert row("careless").attempt_number == 1
    assert [e.instruction for e in MaintenanceTaskExecution.objects.for_task("after")] == ["x"]


def test_invalid_instructions_fail_their_task_alone(make_task):
    bad = make_task("bad", lambda context: ["one", "one"], concurrency=2)
    good = make_task("good", lambda context: ["two"])
    sync_tasks([bad, good])

    reports = DatabaseCycleRunner(hostname="test-host").run_batch([bad, good])

    assert reports[0].errors
    assert reports[0].instructions == ()
    assert reports[1].instructions == ("two",)
    assert "appears more than once" in row("bad").last_error
    assert row("good").last_error == ""


# -- tasks of a batch that are not due ----------------------------------------------


def test_paused_not_due_and_deleted_tasks_in_a_batch(make_task):
    paused, later, gone, due = (make_task(name, delay=5.0) for name in "pdgx")
    sync_tasks([paused, later, gone, due])
    MaintenanceTask.objects.filter(nid="p").update(is_paused=True)
    MaintenanceTask.objects.filter(nid="d").update(
        next_attempt_at=timezone.now() + timezone.timedelta(seconds=20)
    )
    MaintenanceTask.objects.filter(nid="g").delete()
    runner = DatabaseCycleRunner(hostname="test-host", poll_interval=1.0)

    reports = runner.run_batch([paused, later, gone, due])

    assert reports[0].delay == 5.0  # paused: its delay, at least the poll interval
    assert 18 < reports[1].delay <= 20  # not due: until its next attempt
    assert reports[2].delay == 0.0  # deleted in the admin: re-created, due at once
    assert MaintenanceTask.objects.filter(nid="g").exists()
    assert reports[3].delay == 5.0  # attempted
    assert row("x").attempt_number == 1
    assert row("p").attempt_number == 0
    assert row("d").attempt_number == 0


def test_a_batch_may_not_name_a_task_twice(make_task):
    task = make_task("twice")
    with pytest.raises(Exception, match="more than once"):
        DatabaseCycleRunner().run_batch([task, task])


@pytest.mark.parametrize(
    "name",
    ['with "quotes"', "back\\slash", "comma,brace}{", "spaces and 'apostrophes'", "ünïcode"],
)
def test_task_names_that_need_quoting_are_found(make_task, name):
    task = make_task(name, lambda context: ["1"])
    other = make_task("plain", delay=30.0)
    sync_tasks([task, other])

    reports = DatabaseCycleRunner(hostname="test-host").run_batch([task, other])

    assert reports[0].instructions == ("1",)
    assert row(name).attempt_number == 0
    assert row("plain").attempt_number == 1


# -- the Runner batches quiet tasks -------------------------------------------------


def test_a_runner_attempts_quiet_tasks_in_batches(make_task, make_runner, wait_until):
    tasks = [make_task(f"bg-{number}", delay=0.2) for number in range(12)]
    # One worker: on MariaDB, InnoDB briefly locks the rows a batch's locking
    # read scans, so a batch running beside it may skip (delay) a few tasks.
    runner = make_runner(tasks, batch_size=5, max_workers=1)
    sizes: list[int] = []
    run_batch = runner.cycle_runner.run_batch

    def recorded(batch: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(batch))
        return run_batch(batch, *args, **kwargs)

    runner.cycle_runner.run_batch = recorded
    runner.start()
    assert wait_until(lambda: sum(sizes) >= 36)
    runner.stop(timeout=10)

    assert max(sizes) == 5
    assert sum(size >= 4 for size in sizes) >= len(sizes) // 2  # mostly full batches
    attempts = MaintenanceTask.objects.filter(nid__startswith="bg-").values_list(
        "attempt_number", flat=True
    )
    assert min(attempts) >= 2
