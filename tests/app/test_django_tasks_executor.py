"""DjangoTasks in this process: what enqueueing and the shipped Django task do at their edges.

The worker side against a real ``db_worker`` is ``integration/test_django_tasks.py``.
"""

from __future__ import annotations

import pytest

from django_planton.contrib.tasks import DjangoTasks, run_receivers
from django_planton.models import MaintenanceTaskExecution

from ..factories import MaintenanceTaskExecutionFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_enqueue_that_fails_fails_its_execution_and_the_rest_still_go(make_task, make_runner):
    task = make_task(
        "unqueued", lambda context: ["a", "b"], concurrency=2, executor=DjangoTasks(backend="nope")
    )
    make_runner([task]).run_once()
    executions = list(MaintenanceTaskExecution.objects.for_task("unqueued"))
    assert len(executions) == 2
    for execution in executions:
        assert execution.ended_at is not None
        assert "nope" in execution.error["message"]


def test_a_task_unknown_to_the_worker_fails_the_execution_with_a_clear_error():
    execution = MaintenanceTaskExecutionFactory()
    with pytest.raises(LookupError, match="not registered in this worker process"):
        run_receivers.call(execution.pk, "nobody_registered_this")
    execution.refresh_from_db()
    assert execution.ended_at is not None
    assert "not registered in this worker process" in execution.error["message"]


def test_an_ended_execution_is_left_alone():
    execution = MaintenanceTaskExecutionFactory(completed=True)
    assert run_receivers.call(execution.pk, "whatever") == "not running: it has ended"
    assert run_receivers.call(10**9, "whatever") == "gone"


def test_its_repr_names_its_queue():
    assert repr(DjangoTasks(queue_name="mail")) == (
        "DjangoTasks(queue_name='mail', backend='default', priority=0)"
    )
