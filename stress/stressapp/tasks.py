"""The stress run's own tasks, registered by ``StressAppConfig.ready()``.

``idle_probe`` and ``slow_probe`` find nothing, ever; each call of their
schedule leaves a :class:`~.models.ProbeEvent` row (committed with the cycle),
so the stress run counts attempts across the four runner processes.
``idle_probe`` waits 1 s between attempts, ``slow_probe`` 300 s.

``bad_input_probe`` returns a different invalid batch at each attempt (or
raises): every cycle must be rolled back, nothing dispatched, and the runners
must go on. Its schedule's own writes roll back with the cycle, so its
attempts are counted from ``schedule_failed`` (see :mod:`.receivers`).

``blocking_probe`` records its attempts like ``idle_probe`` (1 s delay) and,
while the stress run's flag file ``<STRESS_DIR>/block-schedule`` exists,
blocks in the database until the time written in it: ``SELECT pg_sleep(...)``,
a slow query as far as the runner can tell. The end of the window is a time
of the database's clock, compared with ``clock_timestamp()`` by the server,
because two runners' own clocks are ten minutes off.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

import django_planton
from django_planton import ScheduleContext, Task, backoff

from .models import ProbeEvent


def record_attempt(context: ScheduleContext) -> list[str]:
    ProbeEvent.objects.create(
        kind=ProbeEvent.Kind.ATTEMPT,
        task_name=context.task_name,
        runner=settings.STRESS_RUNNER,
        detail=str(context.attempt_number),
    )
    return []


def _raise(context: ScheduleContext) -> Any:
    raise RuntimeError("bad_input_probe: schedule blew up on purpose")


#: What bad_input_probe returns, one per attempt in turn.
BAD_BATCHES: list[Callable[[ScheduleContext], Any]] = [
    lambda context: ["7", 7],  # the same instruction twice once normalised
    lambda context: ["x" * 5000],  # longer than PLANTON_MAX_INSTRUCTION_LENGTH
    lambda context: ["nul\x00byte"],  # a NUL character
    lambda context: [True],  # neither str nor int
    lambda context: [1.5],
    lambda context: "12",  # not a list
    lambda context: None,
    lambda context: [f"over-{n}" for n in range(context.limit + 1)],  # above the limit
    _raise,
]


def bad_input(context: ScheduleContext) -> Any:
    return BAD_BATCHES[context.attempt_number % len(BAD_BATCHES)](context)


def block_flag() -> Path:
    return Path(settings.STRESS_DIR) / "block-schedule"


def block_while_flagged(context: ScheduleContext) -> list[str]:
    """Record the attempt; while the flag file exists, sleep in the database until its time."""
    record_attempt(context)
    try:
        until = block_flag().read_text().strip()
    except FileNotFoundError:
        return []
    if until:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_sleep(greatest(0, extract(epoch FROM %s::timestamptz "
                "- clock_timestamp()))::float8)",
                [until],
            )
    return []


idle_probe = Task(name="idle_probe", schedule=record_attempt, calculate_delay=backoff.constant(1))
slow_probe = Task(name="slow_probe", schedule=record_attempt, calculate_delay=backoff.constant(300))
bad_input_probe = Task(
    name="bad_input_probe", schedule=bad_input, calculate_delay=backoff.constant(1)
)
blocking_probe = Task(
    name="blocking_probe", schedule=block_while_flagged, calculate_delay=backoff.constant(1)
)


def register_tasks() -> None:
    for task in (idle_probe, slow_probe, bad_input_probe, blocking_probe):
        django_planton.register(task)
