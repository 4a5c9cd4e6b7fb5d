"""Workload 6c: the loop alone, with a cycle runner that does nothing.

The scale curve (workload 4 with more tasks) measures a runner's CPU per
attempt of an idle task: the loop's bookkeeping (when each task is due, the
batches, the wake-up state, the reports) plus the database cycle. Here the
same loop (:class:`django_planton.core.Planton`, default workers and batch
size) drives a cycle runner that answers every attempt at once with a 1 s
delay, without a schedule, rules or database: what the process spends is
the loop's own share, a floor under every row of the curve.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from benchmarks.checks import idle_problems
from benchmarks.protocol import Result
from django_planton import Task
from django_planton.conf import planton_settings
from django_planton.core import CycleReport, Planton

from .meters import Meter, peak_rss_mb


class NoCycles:
    """A batch cycle runner that attempts nothing: each task is due again in 1 s."""

    def __init__(self) -> None:
        self.attempts = 0
        self._lock = threading.Lock()

    def first(self, task: Task) -> CycleReport:
        return CycleReport(delay=0.0)

    def run(self, task: Task, may_schedule: Callable[[], bool]) -> CycleReport:
        return self.run_batch([task], may_schedule)[0]

    def run_batch(
        self, tasks: Sequence[Task], may_schedule: Callable[[], bool]
    ) -> list[CycleReport]:
        with self._lock:
            self.attempts += len(tasks)
        return [CycleReport(delay=1.0) for _ in tasks]


def run(params: dict[str, float]) -> Result:
    """Warm up, then measure ``seconds`` of the loop handing out ``tasks`` idle tasks."""
    count = int(params["tasks"])
    cycles = NoCycles()
    tasks = [Task(name=f"loop-{n:05d}", schedule=lambda context: []) for n in range(count)]
    settings = planton_settings()  # the workers and batch size a Runner would use
    planton = Planton(
        tasks,
        cycle_runner=cycles,
        max_workers=max(1, min(settings.max_workers, count)),
        batch_size=settings.batch_size,
    )
    planton.start()
    time.sleep(params["warmup"])
    before = cycles.attempts
    meter = Meter(None)
    meter.start()
    time.sleep(params["seconds"])
    meter.stop()
    attempts = cycles.attempts - before
    planton.stop(timeout=10)
    return {
        "tasks": count,
        "seconds": meter.wall,
        "cpu": meter.cpu,
        "cpu_us_per_attempt": 1e6 * meter.cpu / attempts if attempts else None,
        "attempts": attempts,
        "attempts_per_s": attempts / meter.wall,
        "threads": meter.threads,
        "peak_rss_mb": peak_rss_mb(),
        "problems": idle_problems(attempts, count, meter.wall),
    }
