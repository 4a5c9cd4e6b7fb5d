"""The signals django-planton sends.

``task_dispatched``
    Once per dispatched instruction, after the cycle's transaction commits.
    Sender: the registered :class:`~django_planton.core.Task`, so that
    ``task_dispatched.connect(receiver, sender=my_task)`` listens to one task.
    Arguments: ``task_name`` (str), ``instruction`` (str), ``execution``
    (the RUNNING :class:`~django_planton.models.MaintenanceTaskExecution`).
    A receiver that raises is logged and its execution is failed with the
    error; the other receivers still run. With no receiver at all (and no
    ``batch_dispatched`` receiver for the task) a warning says so, once per
    task and process. Where receivers run is the task's
    executor's choice (:mod:`django_planton.executors`): threads of the
    runner by default, or the workers of Django's tasks framework or Celery.

``batch_dispatched``
    Once per cycle that dispatched instructions, before the
    ``task_dispatched`` signals of its instructions. Sender: the task.
    Arguments: ``task_name``, ``executions`` (list). For receivers that hand
    a whole batch to a worker system in one go.

``schedule_failed``
    For every failed cycle: ``schedule`` raised, or returned an invalid
    batch. The cycle's transaction was rolled back. Sender: the task.
    Arguments: ``task_name``, ``error`` (the exception).

``execution_terminated``
    When the runner (or an operator) ends an execution that ran too long.
    Sender: the registered task (``MaintenanceTaskExecution`` when the task
    is not registered in this process). Arguments: ``task_name``,
    ``execution``, ``reason`` (str). Give the work back here.

``executions_ended``
    After executions end (completed, failed or terminated) and the
    transaction commits, in the process that ended them. Sender:
    ``MaintenanceTaskExecution``. Arguments: ``task_ids`` (set of
    ``MaintenanceTask`` primary keys), ``notified`` (bool: whether
    PostgreSQL's trigger told the other processes too) and, for a single
    execution's ending, ``instructions`` (``{task id: (instruction,)}``; absent
    for bulk endings). A runner in the same
    process listens to wake those tasks, so a freed slot is refilled without
    waiting out the delay; on PostgreSQL a trigger does the same across
    processes, except for a completion of a task that a runner of the
    completing process schedules (it wakes itself, see ``wakes_in_process``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.dispatch import Signal

from .core import error_log
from .registry import registry

if TYPE_CHECKING:
    from .models import MaintenanceTaskExecution

logger = logging.getLogger("django_planton")


class _Signal(Signal):
    """A ``Signal`` whose ``send_robust()`` leaves the logging of a failing receiver to us.

    Django logs every failure of ``send_robust()`` with its traceback;
    :func:`send_and_log` logs it once per distinct error instead, so that an
    outage that fails every receiver does not flood the log twice over.
    """

    def _log_robust_failure(self, receiver: Any, err: Exception) -> None:
        pass


task_dispatched = _Signal()
batch_dispatched = _Signal()
schedule_failed = _Signal()
execution_terminated = _Signal()
executions_ended = Signal()


def send_and_log(
    signal: Signal, *, sender: Any, task_name: str, **kwargs: Any
) -> list[BaseException]:
    """Send ``signal`` to every receiver; log each one that raised and return their errors.

    A receiver's bug must not stop the runner nor keep the other receivers
    from their signal. ``task_dispatched`` with no receiver at all (and no
    ``batch_dispatched`` receiver for the task) is logged, once per task and
    process: unless something else ends the executions (a process of yours
    that works on the running ones), they hold their slots until their
    maximum duration.
    """
    responses = signal.send_robust(sender=sender, task_name=task_name, **kwargs)
    if signal is task_dispatched and not responses and not receives_dispatches(sender):
        _warn_no_receiver(task_name, kwargs.get("execution"))
        return []
    errors: list[BaseException] = []
    for receiver, response in responses:
        if isinstance(response, Exception):
            # The traceback once per distinct error: an outage fails them all alike.
            error_log.report(
                _failure_line(signal, task_name, receiver, kwargs),
                response,
                extra={
                    "task_name": task_name,
                    "receiver": receiver_name(receiver),
                    **_log_fields(kwargs),
                },
            )
            errors.append(response)
    return errors


def receives_dispatches(task: Any) -> bool:
    """Whether a receiver will see the task's executions: per execution, or per batch.

    A ``batch_dispatched`` receiver alone is a design of its own (it hands the
    batch to a worker system, which ends the executions).
    """
    return task_dispatched.has_listeners(sender=task) or batch_dispatched.has_listeners(sender=task)


_warned_no_receiver: set[str] = set()
_warned_lock = threading.Lock()


def _warn_no_receiver(task_name: str, execution: Any) -> None:
    """Say once per task and process that nobody receives its executions."""
    with _warned_lock:
        first = task_name not in _warned_no_receiver
        _warned_no_receiver.add(task_name)
    if first:
        logger.warning(
            "Task %s has no task_dispatched receiver: its executions (execution %s the first) "
            "run until something ends them, or until their maximum duration. Connect one "
            "with task_dispatched.connect(receiver, sender=<the task>).",
            task_name,
            getattr(execution, "pk", None),
            extra={"task_name": task_name, **_log_fields({"execution": execution})},
        )


def receiver_name(receiver: Any) -> str:
    """A receiver by its dotted name (``myapp.receivers.send_mail``), never a memory address.

    Bound methods read ``module.Class.method``, partials as their function, and
    callable objects as their class.
    """
    target = getattr(receiver, "func", receiver)  # functools.partial
    if not hasattr(target, "__qualname__"):
        target = type(target)
    module = getattr(target, "__module__", None)
    return f"{module}.{target.__qualname__}" if module else str(target.__qualname__)


def _failure_line(signal: Signal, task_name: str, receiver: Any, kwargs: dict[str, Any]) -> str:
    """What failed, for the log: the signal, the task, the execution and its instruction."""
    where = [f"task {task_name}"]
    execution = kwargs.get("execution")
    execution_id = getattr(execution, "pk", None)
    if execution_id is not None:
        where.append(f"execution {execution_id}")
    if execution is not None:
        where.append(f"instruction {execution.instruction!r}")
    if "executions" in kwargs:
        where.append(f"{len(kwargs['executions'])} execution(s)")
    return (
        f"A receiver of {_names.get(signal, 'a signal')} failed for {', '.join(where)} "
        f"({receiver_name(receiver)})"
    )


def _log_fields(kwargs: dict[str, Any]) -> dict[str, Any]:
    execution = kwargs.get("execution")
    if execution is None:
        return {}
    return {"instruction": execution.instruction, "execution_id": getattr(execution, "pk", None)}


def announce_ended(
    task_ids: set[int],
    *,
    using: str,
    notified: bool = True,
    instructions: Mapping[int, Collection[str]] | None = None,
) -> None:
    """Send ``executions_ended`` once the current transaction commits.

    ``notified``: whether PostgreSQL's trigger also told the other processes
    (False for an ending marked :data:`~django_planton.sql.IN_PROCESS_MARKER`).
    ``instructions``: the ended instructions by task id, when known: they let
    a runner tell an ending its last cycle already saw from a new free slot.
    """
    from .models import MaintenanceTaskExecution

    extra = {} if instructions is None else {"instructions": instructions}
    transaction.on_commit(
        lambda: executions_ended.send(
            sender=MaintenanceTaskExecution, task_ids=task_ids, notified=notified, **extra
        ),
        using=using,
    )


#: Row ids of the tasks that a runner of this process schedules and wakes
#: itself for when one of their executions ends here (a count per id: tests
#: may run more than one runner).
_woken_here: Counter[int] = Counter()
_woken_here_lock = threading.Lock()


def wake_here(task_ids: Iterable[int], *, add: bool = True) -> None:
    """A runner of this process starts (``add``) or stops waking itself for these tasks."""
    with _woken_here_lock:
        if add:
            _woken_here.update(task_ids)
        else:
            _woken_here.subtract(task_ids)
            for task_id in [pk for pk, count in _woken_here.items() if count <= 0]:
                del _woken_here[task_id]


def wakes_in_process(task_id: int) -> bool:
    """Whether an ending of this task's execution here is news only to this process.

    A runner of this process schedules the task and refills its freed slot
    as soon as ``executions_ended`` reaches it: the trigger's NOTIFY to the
    other processes would be redundant, and every notifying commit takes a
    cluster-wide lock (see :data:`~django_planton.sql.IN_PROCESS_MARKER`).
    """
    return task_id in _woken_here


def send_terminated(executions: Iterable[MaintenanceTaskExecution], reason: str) -> None:
    """Send ``execution_terminated`` for each execution, then one ``executions_ended``."""
    from .models import MaintenanceTaskExecution

    executions = list(executions)
    for execution in executions:
        task_name = execution.maintenance_task.nid
        # The registered task is the sender, as for task_dispatched, so that a
        # receiver can subscribe to one task; a task not registered in this
        # process falls back to the model.
        sender = registry.get_or_none(task_name) or MaintenanceTaskExecution
        send_and_log(
            execution_terminated,
            sender=sender,
            task_name=task_name,
            execution=execution,
            reason=reason,
        )
    executions_ended.send(
        sender=MaintenanceTaskExecution,
        task_ids={execution.maintenance_task_id for execution in executions},
    )


__all__ = [
    "batch_dispatched",
    "execution_terminated",
    "executions_ended",
    "schedule_failed",
    "task_dispatched",
]

_names: dict[Signal, str] = {
    task_dispatched: "task_dispatched",
    batch_dispatched: "batch_dispatched",
    schedule_failed: "schedule_failed",
    execution_terminated: "execution_terminated",
}
