"""Run a task's receivers on Django's tasks framework: ``DjangoTasks`` (``django-planton[tasks]``).

After a cycle commits, each execution is enqueued as :func:`run_receivers`,
a Django task that django-planton ships, on the backend and queue you name.
In the worker process it loads the execution; one that is no longer running
(terminated meanwhile, or ended) is left alone, with a log line saying why;
otherwise ``task_dispatched`` is sent there, to the same receivers with the
same arguments as in ``run_planton``. A receiver that raises fails the
execution; receivers end their executions themselves.

Django 6 ships the framework as ``django.tasks``; on Django 5.2 the
``django-tasks`` backport provides it. Any backend works whose workers run
your project's code (``django-tasks-db``'s ``db_worker``, RQ...): the worker
must have django-planton in ``INSTALLED_APPS`` and register the same tasks
(in ``AppConfig.ready()``, as ``run_planton`` does).

Delivery is at least once: the enqueue happens after the cycle commits, and
a worker that dies inside a receiver leaves the execution to the
maximum-duration reaper. An enqueue that fails (a backend that is down)
fails that execution with the error; the rest of the batch still goes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS

from ..executors import Executor, fail_unsent
from .worker import run_in_worker

try:  # Django 6
    from django.tasks import task as django_task  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Django 5.2: the backport
    from django_tasks import task as django_task  # type: ignore[import-not-found,no-redef,unused-ignore]

if TYPE_CHECKING:
    from ..core import Task
    from ..models import MaintenanceTaskExecution

__all__ = ["DjangoTasks", "run_receivers"]

logger = logging.getLogger("django_planton")


@django_task()  # type: ignore[misc,untyped-decorator,unused-ignore]
def run_receivers(execution_id: int, task_name: str, using: str = DEFAULT_DB_ALIAS) -> str:
    """In the worker: send ``task_dispatched`` for one execution, if it is still running.

    Returns what it did, in words (the task result's return value).
    """
    return run_in_worker(execution_id, task_name, using)


class DjangoTasks(Executor):
    """Enqueue each execution as a Django task; its receivers run in the backend's workers."""

    def __init__(
        self, queue_name: str = "default", backend: str = "default", priority: int = 0
    ) -> None:
        self.queue_name = queue_name
        self.backend = backend
        self.priority = priority

    def __repr__(self) -> str:
        return (
            f"DjangoTasks(queue_name={self.queue_name!r}, backend={self.backend!r}, "
            f"priority={self.priority!r})"
        )

    def submit(self, task: Task, executions: Sequence[MaintenanceTaskExecution]) -> None:
        where = f"Django's tasks backend {self.backend!r}"
        try:
            bound: Any = run_receivers.using(
                queue_name=self.queue_name, backend=self.backend, priority=self.priority
            )
        except Exception as error:  # an unknown backend or queue: nothing can be enqueued
            for execution in executions:
                fail_unsent(task, execution, error, where=where)
            return
        for execution in executions:
            using = execution._state.db or DEFAULT_DB_ALIAS
            try:
                bound.enqueue(execution.pk, task.name, using)
            except Exception as error:  # a backend that is down: fail this one, go on
                fail_unsent(task, execution, error, where=where)
