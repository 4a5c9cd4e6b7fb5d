"""Receivers of the stress run.

``send_user_email``'s receiver is replaced by :func:`deliver_slowly`: a random
1-10 ms pause per execution, then the example site's own receiver. When the
stress run creates the file ``<STRESS_DIR>/hang-<runner>``, that runner's
executions hang instead (before any e-mail goes out), so that it can be
killed in the middle of its work.

``execution_terminated`` and ``bad_input_probe``'s ``schedule_failed`` leave
a :class:`~.models.ProbeEvent` row, so the stress run sees them fire. So does
a receiver that, once its work is done, finds its execution terminated
meanwhile (``cut_short``): an execution ended while it was still being
worked on, which the maximum duration (3 s or more; the work takes
milliseconds) must never do. And so does a receiver handed an execution that
had already ended when it started (``late_start``): ``task_dispatched`` is
meant for running executions only.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from django_planton.models import MaintenanceTaskExecution
from django_planton.signals import execution_terminated, schedule_failed, task_dispatched
from example_site.accounts.receivers import deliver_welcome_email
from example_site.accounts.tasks import send_user_email

from .models import ProbeEvent
from .tasks import bad_input_probe

logger = logging.getLogger(__name__)

#: The longest a hanging receiver waits for its runner to be killed.
HANG_AT_MOST = 120.0


def connect() -> None:
    task_dispatched.disconnect(sender=send_user_email, dispatch_uid="accounts.deliver_welcome")
    task_dispatched.connect(
        deliver_slowly, sender=send_user_email, dispatch_uid="stress.deliver_slowly"
    )
    # Any sender: the registered task, or the model when the task is not
    # registered in the process that terminates the execution.
    execution_terminated.connect(record_terminated, dispatch_uid="stress.terminated")
    schedule_failed.connect(
        record_schedule_failed, sender=bad_input_probe, dispatch_uid="stress.schedule_failed"
    )


def hang_flag() -> Path:
    return Path(settings.STRESS_DIR) / f"hang-{settings.STRESS_HANG_NAME}"


def deliver_slowly(sender: Any, **kwargs: Any) -> None:
    record_if_late(send_user_email.name, kwargs["execution"])
    flag = hang_flag()
    if flag.exists():
        execution = kwargs["execution"]
        logger.warning("Hanging on purpose in execution %s until killed.", execution.pk)
        deadline = time.monotonic() + HANG_AT_MOST
        while flag.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    time.sleep(random.uniform(0.001, 0.010))
    deliver_welcome_email(sender, **kwargs)
    record_if_cut_short(send_user_email.name, kwargs["execution"])


def record_if_late(task_name: str, execution: MaintenanceTaskExecution) -> None:
    """Leave a ``late_start`` event if the execution had ended before its receiver started.

    Not checked when the database is gone: the receiver then fails as it would have.
    """
    try:
        ended = MaintenanceTaskExecution.objects.filter(
            pk=execution.pk, ended_at__isnull=False
        ).exists()
        if not ended:
            return
        ProbeEvent.objects.create(
            kind=ProbeEvent.Kind.LATE_START,
            task_name=task_name,
            runner=settings.STRESS_RUNNER,
            detail=str(execution.pk),
        )
    except DatabaseError:
        return
    logger.warning("Execution %s had ended before its receiver started.", execution.pk)


def record_if_cut_short(task_name: str, execution: MaintenanceTaskExecution) -> None:
    """Leave a ``cut_short`` event if the execution was terminated while this receiver worked.

    The receiver returned normally, so it was alive and at work until now.
    Not checked when the database is gone (the outage scenario): nothing can
    be recorded then.
    """
    try:
        reasons = list(
            MaintenanceTaskExecution.objects.filter(
                pk=execution.pk, terminated_at__isnull=False
            ).values_list("terminated_reason", flat=True)
        )
        if not reasons:
            return
        ProbeEvent.objects.create(
            kind=ProbeEvent.Kind.CUT_SHORT,
            task_name=task_name,
            runner=settings.STRESS_RUNNER,
            detail=str(execution.pk),
        )
    except DatabaseError:
        return
    logger.warning(
        "Execution %s was terminated (%s) while its receiver was at work.", execution.pk, reasons[0]
    )


def record_terminated(
    sender: Any, *, execution: MaintenanceTaskExecution, reason: str, **kwargs: Any
) -> None:
    ProbeEvent.objects.create(
        kind=ProbeEvent.Kind.TERMINATED,
        task_name=execution.maintenance_task.nid,
        runner=settings.STRESS_RUNNER,
        detail=str(execution.pk),
    )
    logger.info("execution_terminated received for execution %s (%s)", execution.pk, reason)


def record_schedule_failed(sender: Any, *, task_name: str, error: Exception, **kwargs: Any) -> None:
    ProbeEvent.objects.create(
        kind=ProbeEvent.Kind.SCHEDULE_FAILED,
        task_name=task_name,
        runner=settings.STRESS_RUNNER,
        detail=f"{type(error).__name__}: {error}"[:500],
    )
