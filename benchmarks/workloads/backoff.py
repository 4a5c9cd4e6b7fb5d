"""Workload 3b: an idle task keeps to its delay, even when its executions keep waking it.

One task whose schedule finds nothing, delay 1 s: its attempts are counted
over ``seconds`` alone, then as long again while an execution of it is
created and completed every 20 ms (each end is a wake-up). Either way it
should be attempted about once a second.
"""

from __future__ import annotations

import threading
import time

from django.db import connection
from django.utils import timezone

from benchmarks.checks import backoff_problems
from benchmarks.protocol import Result
from django_planton import Task
from django_planton.models import ExecutionState, MaintenanceTaskExecution
from django_planton.runner import Runner, sync_tasks

from .common import CallCounter, Params, one_second
from .meters import QueryCounter, counting
from .tables import reset_tables

POKE_INTERVAL = 0.02


class Poker:
    """A thread that ends one of the task's executions every 20 ms, until stopped."""

    def __init__(self, task_id: int) -> None:
        self._task_id = task_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poke, name="bench-poker", daemon=True)

    def __enter__(self) -> Poker:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poke(self) -> None:
        number = 0
        try:
            while not self._stop.wait(POKE_INTERVAL):
                number += 1
                MaintenanceTaskExecution.objects.create(
                    maintenance_task_id=self._task_id,
                    instruction=f"poke-{number}",
                    started_at=timezone.now(),
                    state=ExecutionState.RUNNING,
                ).complete()
        finally:
            connection.close()


def measure_phase(
    calls: CallCounter, counter: QueryCounter, seconds: float, poker: Poker | None
) -> dict[str, int]:
    """The attempts (schedule calls) and cycles (reads of the row) over ``seconds``."""
    calls_before, cycles_before = calls.calls, counter.snapshot()["CYCLE"]
    if poker is None:
        time.sleep(seconds)
    else:
        with poker:
            time.sleep(seconds)
    return {
        "attempts": calls.calls - calls_before,
        "cycles": counter.snapshot()["CYCLE"] - cycles_before,
    }


def run(params: Params) -> Result:
    """Both phases in one runner, the quiet one first."""
    seconds = params["seconds"]
    counter = counting()
    reset_tables(0)
    calls = CallCounter()
    task = Task(name="bench_backoff", schedule=calls, concurrency=10, calculate_delay=one_second)
    (task_id,) = sync_tasks([task]).keys()
    runner = Runner([task])
    runner.start()
    phases = {
        "alone": measure_phase(calls, counter, seconds, None),
        "woken every 20 ms": measure_phase(calls, counter, seconds, Poker(task_id)),
    }
    runner.stop(timeout=30)
    return {"seconds": seconds, "phases": phases, "problems": backoff_problems(phases, seconds)}
