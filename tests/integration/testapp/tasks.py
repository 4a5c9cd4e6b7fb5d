"""Tasks of the test app, registered by its ``ready()``.

``testapp_idle`` finds nothing, ever; with ``PLANTON_TEST_RECORD_ATTEMPTS=1``
each attempt leaves an ``auth.Group`` named ``attempt-...``, so that a test
can count attempts across processes; with ``PLANTON_TEST_IDLE_BLOCK=<seconds>``
its schedule prints ``testapp_idle: blocking`` and sleeps that long, so that a
test can stop the process while a cycle is in flight; with
``PLANTON_TEST_IDLE_RAISE=<message>`` it raises ``RuntimeError(message)``.
Its delay is ``PLANTON_TEST_IDLE_DELAY`` seconds (0.05 by default).

``testapp_claim_jobs`` works through the ``auth.Group`` rows named
``job-...``: its schedule returns the ids of those not being worked on, and
the ``task_dispatched`` receiver hands each to a thread that deletes the
group and completes the execution in one transaction, as a worker would.
Its concurrency comes from ``PLANTON_TEST_CONCURRENCY`` (3 by default). With
``PLANTON_TEST_RECEIVER_SLEEP=<seconds>`` the receiver prints
``testapp_claim_jobs: receiver sleeping`` and sleeps that long first, so that
a test can stop the process while a receiver is at work.

``testapp_slow_jobs`` (concurrency 3) works through the ``auth.Group`` rows
named ``slowjob-...`` the same way, but each takes
``PLANTON_TEST_WORK_SECONDS`` (1 by default): while its receiver works, a
``working-<job>-<execution>`` group exists (deleted with the job, in the
transaction that completes the execution), and a ``worked-<job>-<execution>``
group stays behind, so that a test can count the receivers at work across
processes and the jobs worked more than once, whatever the clocks say.

``testapp_bridged`` (concurrency 5) claims the groups named ``bridge-...``
and runs its receivers on Django's tasks framework (``DjangoTasks``): the
receiver, in the worker process, leaves ``ranby-<pid>-<execution>``, deletes
the group and completes the execution; for a group whose name holds
``raise`` it raises instead.

``testapp_celery`` does the same with the groups named ``celery-...``, on
Celery (queue ``planton_test``, the app of ``tests/integration/celery_app.py``).

``testapp_tick`` finds nothing, ever; each attempt leaves a group named
``tick-<hostname>-...`` (committed with the cycle), so that a test sees which
runner made each attempt. Its delay is ``PLANTON_TEST_TICK_DELAY`` seconds
(1 by default), the same for every attempt.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction

import django_planton
from django_planton.core import ScheduleContext, Task
from django_planton.models import MaintenanceTaskExecution
from django_planton.signals import task_dispatched

JOB_PREFIX = "job-"
ATTEMPT_PREFIX = "attempt-"
SLOW_JOB_PREFIX = "slowjob-"
WORKING_PREFIX = "working-"
WORKED_PREFIX = "worked-"
TICK_PREFIX = "tick-"
BRIDGE_PREFIX = "bridge-"
CELERY_PREFIX = "celery-"
CELERY_QUEUE = "planton_test"
RAN_BY_PREFIX = "ranby-"
SLOW_CONCURRENCY = 3

_pool: ThreadPoolExecutor | None = None
_slow_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def idle(context: ScheduleContext) -> list[str]:
    if os.environ.get("PLANTON_TEST_RECORD_ATTEMPTS") == "1":
        Group.objects.create(name=f"{ATTEMPT_PREFIX}{uuid.uuid4().hex}")
    block = float(os.environ.get("PLANTON_TEST_IDLE_BLOCK", "0"))
    if block:
        print("testapp_idle: blocking", flush=True)
        time.sleep(block)
    if os.environ.get("PLANTON_TEST_IDLE_RAISE"):
        raise RuntimeError(os.environ["PLANTON_TEST_IDLE_RAISE"])
    return []


def claim_jobs(context: ScheduleContext) -> list[int]:
    active = [int(instruction) for instruction in context.active_task_instructions]
    jobs = (
        Group.objects.filter(name__startswith=JOB_PREFIX)
        .exclude(pk__in=active)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return list(jobs[: context.limit])


def _delay(attempt_number: int) -> float:
    return 0.005 if attempt_number == 0 else 0.02


def _work(execution_pk: int, group_pk: int) -> None:
    time.sleep(random.uniform(0.001, 0.005))
    with transaction.atomic():
        Group.objects.filter(pk=group_pk).delete()
        MaintenanceTaskExecution.objects.filter(pk=execution_pk).complete()


def hand_to_worker(sender: Task, execution: MaintenanceTaskExecution, **kwargs: Any) -> None:
    global _pool
    sleep = float(os.environ.get("PLANTON_TEST_RECEIVER_SLEEP", "0"))
    if sleep:
        print("testapp_claim_jobs: receiver sleeping", flush=True)
        time.sleep(sleep)
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="testapp-worker")
    _pool.submit(_work, execution.pk, int(execution.instruction))


def claim_slow_jobs(context: ScheduleContext) -> list[int]:
    active = [int(instruction) for instruction in context.active_task_instructions]
    jobs = (
        Group.objects.filter(name__startswith=SLOW_JOB_PREFIX)
        .exclude(pk__in=active)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return list(jobs[: context.limit])


def _work_slowly(execution_pk: int, job_pk: int) -> None:
    working = Group.objects.create(name=f"{WORKING_PREFIX}{job_pk}-{execution_pk}")
    Group.objects.create(name=f"{WORKED_PREFIX}{job_pk}-{execution_pk}")
    time.sleep(float(os.environ.get("PLANTON_TEST_WORK_SECONDS", "1")))
    with transaction.atomic():
        Group.objects.filter(pk__in=[job_pk, working.pk]).delete()
        MaintenanceTaskExecution.objects.filter(pk=execution_pk).complete()


def hand_to_slow_worker(sender: Task, execution: MaintenanceTaskExecution, **kwargs: Any) -> None:
    global _slow_pool
    with _pool_lock:
        if _slow_pool is None:
            _slow_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="testapp-slow")
    _slow_pool.submit(_work_slowly, execution.pk, int(execution.instruction))


def tick(context: ScheduleContext) -> list[str]:
    hostname = settings.PLANTON_HOSTNAME or socket.gethostname()
    Group.objects.create(name=f"{TICK_PREFIX}{hostname}-{uuid.uuid4().hex}")
    return []


IDLE = Task(
    name="testapp_idle",
    schedule=idle,
    calculate_delay=lambda attempt_number: float(os.environ.get("PLANTON_TEST_IDLE_DELAY", "0.05")),
)
CLAIM_JOBS = Task(
    name="testapp_claim_jobs",
    schedule=claim_jobs,
    concurrency=int(os.environ.get("PLANTON_TEST_CONCURRENCY", "3")),
    calculate_delay=_delay,
)


SLOW_JOBS = Task(
    name="testapp_slow_jobs",
    schedule=claim_slow_jobs,
    concurrency=SLOW_CONCURRENCY,
    calculate_delay=_delay,
)
TICK = Task(
    name="testapp_tick",
    schedule=tick,
    calculate_delay=lambda attempt_number: float(os.environ.get("PLANTON_TEST_TICK_DELAY", "1")),
)


def claim_bridge_jobs(context: ScheduleContext, prefix: str = BRIDGE_PREFIX) -> list[str]:
    active = set(context.active_task_instructions)
    names = Group.objects.filter(name__startswith=prefix).order_by("name")
    return [name for name in names.values_list("name", flat=True) if name not in active][
        : context.limit
    ]


def claim_celery_jobs(context: ScheduleContext) -> list[str]:
    return claim_bridge_jobs(context, CELERY_PREFIX)


def work_in_the_worker(sender: Task, execution: MaintenanceTaskExecution, **kwargs: Any) -> None:
    """A receiver of the bridged task: leaves ``ranby-<pid>-<execution>`` behind, completes."""
    if "raise" in execution.instruction:
        raise RuntimeError(f"the receiver of {execution.instruction} raised")
    with transaction.atomic():
        Group.objects.create(name=f"{RAN_BY_PREFIX}{os.getpid()}-{execution.pk}")
        Group.objects.filter(name=execution.instruction).delete()
        execution.complete()


BRIDGED = Task(
    name="testapp_bridged",
    schedule=claim_bridge_jobs,
    concurrency=5,
    calculate_delay=_delay,
)


CELERY_BRIDGED = Task(
    name="testapp_celery",
    schedule=claim_celery_jobs,
    concurrency=5,
    calculate_delay=_delay,
)


def register_tasks() -> None:
    from django_planton.contrib.celery import Celery
    from django_planton.contrib.tasks import DjangoTasks

    from ..celery_app import app

    django_planton.register(BRIDGED, executor=DjangoTasks())
    task_dispatched.connect(work_in_the_worker, sender=BRIDGED, dispatch_uid="testapp-bridged")
    django_planton.register(CELERY_BRIDGED, executor=Celery(queue=CELERY_QUEUE, app=app))
    task_dispatched.connect(
        work_in_the_worker, sender=CELERY_BRIDGED, dispatch_uid="testapp-celery"
    )
    django_planton.register(IDLE)
    django_planton.register(CLAIM_JOBS)
    django_planton.register(SLOW_JOBS)
    django_planton.register(TICK)
    task_dispatched.connect(hand_to_worker, sender=CLAIM_JOBS, dispatch_uid="testapp-worker")
    task_dispatched.connect(
        hand_to_slow_worker, sender=SLOW_JOBS, dispatch_uid="testapp-slow-worker"
    )
