"""Run a task's receivers on Celery: ``Celery`` (``django-planton[celery]``).

After a cycle commits, each execution is sent to the Celery task
``django_planton.run_receivers``, which django-planton ships as a shared task
(so it is registered on your project's Celery app). In the worker it loads
the execution and sends ``task_dispatched`` there, unless the execution is no
longer running (:func:`~django_planton.contrib.worker.run_in_worker`). The
worker must import this module: registering a task with ``executor=Celery()``
in an ``AppConfig.ready()`` does, as Celery's Django integration runs
``ready()`` in its workers.

Delivery is at least once: the message is sent after the cycle commits, and
a worker that dies inside a receiver leaves the execution to the
maximum-duration reaper. A send that fails (a broker that is down) fails that
execution with the error; the rest of the batch still goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery import current_app, shared_task  # type: ignore[import-untyped,unused-ignore]
from django.db import DEFAULT_DB_ALIAS

from ..executors import Executor, fail_unsent
from .worker import run_in_worker

if TYPE_CHECKING:
    from ..core import Task
    from ..models import MaintenanceTaskExecution

__all__ = ["TASK_NAME", "Celery", "run_receivers"]

#: The name of the Celery task that runs an execution's receivers in a worker.
TASK_NAME = "django_planton.run_receivers"


@shared_task(name=TASK_NAME, ignore_result=True)  # type: ignore[misc,untyped-decorator,unused-ignore]
def run_receivers(execution_id: int, task_name: str, using: str = DEFAULT_DB_ALIAS) -> str:
    """In the worker: send ``task_dispatched`` for one execution, if it is still running."""
    return run_in_worker(execution_id, task_name, using)


class Celery(Executor):
    """Send each execution to a Celery worker; ``queue`` None: the app's default queue.

    ``app`` is the project's Celery app; None: Celery's current app (the one
    your project's ``celery.py`` creates and imports at start-up).
    """

    def __init__(self, queue: str | None = None, app: Any = None) -> None:
        self.queue = queue
        self.app = app

    def __repr__(self) -> str:
        return f"Celery(queue={self.queue!r})"

    def submit(self, task: Task, executions: Sequence[MaintenanceTaskExecution]) -> None:
        app = self.app if self.app is not None else current_app
        options = {"queue": self.queue} if self.queue else {}
        for execution in executions:
            using = execution._state.db or DEFAULT_DB_ALIAS
            try:
                app.send_task(TASK_NAME, args=[execution.pk, task.name, using], **options)
            except Exception as error:  # a broker that is down: fail this one, go on
                fail_unsent(task, execution, error, where=f"Celery ({app.main or 'app'})")
