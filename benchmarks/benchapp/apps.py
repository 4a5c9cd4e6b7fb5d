"""Registers the drained task in a benchmark's worker processes (``db_worker``).

The executors' drain with ``DjangoTasks`` runs its receivers in ``db_worker``
processes: they must register the same task, with the same receiver, as the
drain's own process does. ``PLANTON_BENCH_WORKER`` (``"<concurrency>:<work
ms>:<receiver>"``) asks for it; without it this app does nothing.
"""

import os

from django.apps import AppConfig


class BenchAppConfig(AppConfig):
    name = "benchmarks.benchapp"
    label = "planton_bench"

    def ready(self) -> None:
        wanted = os.environ.get("PLANTON_BENCH_WORKER")
        if not wanted:
            return
        from benchmarks.workloads.drain import register_worker_task

        concurrency, work_ms, receiver = wanted.split(":")
        register_worker_task(int(concurrency), int(work_ms), receiver)
