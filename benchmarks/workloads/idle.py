"""Workload 4: many tasks that never find work, delays of 1 s; what does waiting cost?

Default worker count and batch size. After a warm-up, the runner's CPU,
its statements and its attempts are measured; on PostgreSQL a connection
of the benchmark's own counts the database's connections meanwhile (its
thread's CPU is left out of the runner's).
"""

from __future__ import annotations

import statistics
import threading
import time

from django.conf import settings

from benchmarks.checks import idle_problems
from benchmarks.protocol import Result
from django_planton import Task
from django_planton.runner import Runner

from .common import CallCounter, Params, one_second
from .hooks import maybe_profile
from .meters import Meter, counting, peak_rss_mb, total
from .tables import psycopg_conninfo, reset_tables, vendor

SAMPLER_THREAD = "bench-connections"
SAMPLE_INTERVAL = 0.5
CONNECTIONS_SQL = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


class ConnectionSampler:
    """Counts this database's connections every ``interval`` s, until stopped (PostgreSQL)."""

    def __init__(self, interval: float) -> None:
        self.samples: list[int] = []
        self._interval = interval
        self._conninfo = psycopg_conninfo()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name=SAMPLER_THREAD, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        # Imported here, not at the top: on SQLite psycopg is never loaded, and
        # loading it would add some 10 MiB to the run's peak memory.
        import psycopg

        with psycopg.connect(**self._conninfo, autocommit=True) as conn:
            while not self._stop.wait(self._interval):
                row = conn.execute(CONNECTIONS_SQL).fetchone()
                self.samples.append(int(row[0]) if row else 0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run(params: Params) -> Result:
    """Warm up, then measure ``seconds`` of idling."""
    counter = counting()
    profiles = maybe_profile()
    reset_tables(0)
    calls = CallCounter()
    tasks = [
        Task(name=f"bench_idle_{n:04d}", schedule=calls, calculate_delay=one_second)
        for n in range(params["tasks"])
    ]
    sampler = ConnectionSampler(SAMPLE_INTERVAL) if vendor() == "postgresql" else None
    runner = Runner(tasks, around_attempt=profiles.around_attempt if profiles else None)
    runner.start()
    time.sleep(params["warmup"])
    calls_before = calls.calls
    meter = Meter(counter)
    meter.start()
    time.sleep(params["seconds"])
    meter.stop()
    attempts = calls.calls - calls_before
    if sampler:
        sampler.stop()
    runner.stop(timeout=30)
    if profiles:
        profiles.dump()
    return idle_result(runner.planton.max_workers, len(tasks), attempts, meter, sampler)


def idle_result(
    workers: int, tasks: int, attempts: int, meter: Meter, sampler: ConnectionSampler | None
) -> Result:
    """The idle table's figures, and the check that the tasks were attempted often enough."""
    queries = total(meter.queries)
    samples = sampler.samples if sampler else []
    return {
        "tasks": tasks,
        "workers": workers,
        "setting_workers": settings.PLANTON_MAX_WORKERS,
        "seconds": meter.wall,
        "cpu": meter.cpu,
        # The connection sampler is the benchmark's, not the runner's.
        "cpu_share": (meter.cpu - meter.threads.get(SAMPLER_THREAD, 0.0)) / meter.wall,
        "threads": meter.threads,
        "attempts": attempts,
        "attempts_per_s": attempts / meter.wall,
        "queries": dict(meter.queries),
        "queries_per_s": queries / meter.wall,
        "queries_per_attempt": queries / attempts if attempts else None,
        "connections_max": max(samples) if samples else None,
        "connections_median": statistics.median(samples) if samples else None,
        "peak_rss_mb": peak_rss_mb(),
        "problems": idle_problems(attempts, tasks, meter.wall),
    }
