"""The two tables: names, constraints, the task's helpers and the runner's bulk writes."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from django_planton.models import (
    ExecutionState,
    MaintenanceTask,
    MaintenanceTaskExecution,
)
from django_planton.sql import insert_executions, postgres_array, update_rows

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory

pytestmark = pytest.mark.django_db


# -- tables ----------------------------------------------------------------------


def test_table_names():
    assert MaintenanceTask._meta.db_table == "maintenance_task"
    assert MaintenanceTaskExecution._meta.db_table == "maintenance_task_execution"
    tables = set(connection.introspection.table_names())
    assert {"maintenance_task", "maintenance_task_execution"} <= tables


def test_executions_table_is_unlogged_on_postgresql_only():
    if connection.vendor != "postgresql":
        # Nothing to check elsewhere: the migration's UNLOGGED step is PostgreSQL's.
        assert MaintenanceTaskExecution.objects.count() == 0
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, relpersistence FROM pg_class WHERE relname = ANY(%s)",
            [["maintenance_task", "maintenance_task_execution"]],
        )
        persistence = dict(cursor.fetchall())
    assert persistence == {"maintenance_task": "p", "maintenance_task_execution": "u"}


def test_str_of_task_and_execution():
    execution = MaintenanceTaskExecutionFactory(
        maintenance_task__nid="send_email", instruction="42"
    )
    assert str(execution.maintenance_task) == "send_email"
    assert str(execution) == f"{execution.maintenance_task_id}:42"


# -- check constraints -----------------------------------------------------------


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param({"state": "RUNNING", "ended_at": True}, id="running-with-ended_at"),
        pytest.param(
            {"state": "COMPLETED", "terminated_at": True}, id="terminated_at-without-ended_at"
        ),
        pytest.param({"state": "BOGUS"}, id="unknown-state"),
    ],
)
def test_an_impossible_execution_violates_a_constraint(broken):
    fields = {name: timezone.now() if value is True else value for name, value in broken.items()}
    task = MaintenanceTaskFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        MaintenanceTaskExecution.objects.create(
            maintenance_task=task, instruction="1", started_at=timezone.now(), **fields
        )


def test_completed_execution_with_ended_at_is_fine():
    execution = MaintenanceTaskExecutionFactory(completed=True)
    assert execution.state == ExecutionState.COMPLETED
    assert execution.ended_at is not None


def test_an_update_to_an_unknown_state_violates_a_constraint():
    execution = MaintenanceTaskExecutionFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        MaintenanceTaskExecution.objects.filter(pk=execution.pk).update(state="PAUSED")
    execution.refresh_from_db()
    assert execution.state == ExecutionState.RUNNING


# -- MaintenanceTask -------------------------------------------------------------


def test_effective_concurrency_is_the_override_when_set():
    task = MaintenanceTaskFactory(concurrency=3)
    assert task.effective_concurrency == 3
    task.maximum_concurrent_execution_count = 7
    assert task.effective_concurrency == 7
    task.maximum_concurrent_execution_count = 1
    assert task.effective_concurrency == 1


def test_task_queryset_helpers():
    paused = MaintenanceTaskFactory(nid="paused", is_paused=True)
    active = MaintenanceTaskFactory(nid="active")
    MaintenanceTaskExecutionFactory.create_batch(2, maintenance_task=active)
    MaintenanceTaskExecutionFactory(maintenance_task=active, completed=True)

    assert list(MaintenanceTask.objects.for_task("paused")) == [paused]
    assert list(MaintenanceTask.objects.paused()) == [paused]
    assert list(MaintenanceTask.objects.active()) == [active]
    counts = dict(MaintenanceTask.objects.with_running_count().values_list("nid", "running_count"))
    assert counts == {"paused": 0, "active": 2}


# -- the runner's writes ---------------------------------------------------------------


def new_executions(task: MaintenanceTask, instructions: list[str]) -> list[Any]:
    now = timezone.now()
    return [
        MaintenanceTaskExecution(
            maintenance_task=task,
            instruction=instruction,
            started_at=now,
            hostname="test-host",
            state=ExecutionState.RUNNING,
            created_at=now,
        )
        for instruction in instructions
    ]


def test_insert_executions_stores_each_row_and_sets_its_primary_key():
    first, second = MaintenanceTaskFactory(), MaintenanceTaskFactory()
    odd = ['with "quotes"', "back\\slash", "comma,brace}{", "ünïcode", "NULL", ""]
    executions = new_executions(first, odd) + new_executions(second, ["7"])

    insert_executions(executions, using="default")

    assert all(execution.pk is not None for execution in executions)
    stored = {
        execution.pk: execution
        for execution in MaintenanceTaskExecution.objects.filter(
            pk__in=[execution.pk for execution in executions]
        )
    }
    assert [stored[e.pk].instruction for e in executions] == [*odd, "7"]
    assert [stored[e.pk].maintenance_task_id for e in executions] == [first.pk] * 6 + [second.pk]
    one = stored[executions[0].pk]
    assert one.state == ExecutionState.RUNNING
    assert one.hostname == "test-host"
    assert one.started_at == executions[0].started_at
    assert one.ended_at is one.error is one.terminated_reason is one.last_seen_at is None
    # The instances are saved ones: completing them works without a reload.
    assert executions[-1].complete()
    assert MaintenanceTaskExecution.objects.get(pk=executions[-1].pk).state == "COMPLETED"


def test_insert_executions_splits_what_one_statement_cannot_carry():
    task = MaintenanceTaskFactory()
    executions = new_executions(task, [str(number) for number in range(1200)])

    insert_executions(executions, using="default")

    assert len({execution.pk for execution in executions}) == 1200
    assert MaintenanceTaskExecution.objects.filter(maintenance_task=task).count() == 1200


def test_insert_executions_of_nothing_sends_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        insert_executions([], using="default")


def test_update_rows_adds_to_each_row_and_sets_the_rest():
    tasks = [MaintenanceTaskFactory(attempt_number=number) for number in (0, 4, 9)]
    untouched = MaintenanceTaskFactory(attempt_number=2)
    now = timezone.now()

    count = update_rows(
        MaintenanceTask,
        [task.pk for task in tasks],
        {"last_error": "", "last_attempted_at": now},
        using="default",
        add={"attempt_number": 1},
    )

    assert count == 3
    rows = MaintenanceTask.objects.filter(pk__in=[task.pk for task in tasks]).order_by("pk")
    assert [row.attempt_number for row in rows] == [1, 5, 10]
    assert {row.last_attempted_at for row in rows} == {now}
    assert MaintenanceTask.objects.get(pk=untouched.pk).attempt_number == 2


@pytest.mark.parametrize(
    ("values", "literal"),
    [
        ([1, 22, 333], "{1,22,333}"),
        (["a", "b"], '{"a","b"}'),
        (['q"uote', "back\\slash"], '{"q\\"uote","back\\\\slash"}'),
        ([], "{}"),
    ],
)
def test_postgres_array_literals(values, literal):
    assert postgres_array(values) == literal
