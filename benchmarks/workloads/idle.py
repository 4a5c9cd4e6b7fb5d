"""Workload 4: many tasks that never find work, delays of 1 s; what does waiting cost?

Default worker count and batch size. After a warm-up, the runner's CPU,
its statements and its attempts are measured; on PostgreSQL a connection
of the benchmark's own counts the database's connections meanwhile (its
thread's CPU is left out of the runner's). Section 6 runs it again with
more tasks (500, 2,000, 10,000): the cost curve of one runner.
"""

from __future__ import annotations

import contextlib
import statistics
import time

from benchmarks.checks import idle_problems
from benchmarks.protocol import Result
from django_planton.conf import planton_settings
from django_planton.runner import Runner

from .activity import (
    COUNTS_READ,
    SAMPLER_THREAD,
    ActivitySampler,
    connect,
    server_counts,
    server_delta,
)
from .common import CallCounter, Params, idle_tasks
from .hooks import maybe_profile
from .meters import Meter, counting, peak_rss_mb, total
from .tables import reset_tables, vendor

SAMPLE_INTERVAL = 0.5


def run(params: Params) -> Result:
    """Warm up, then measure ``seconds`` of idling."""
    counter = counting()
    profiles = maybe_profile()
    reset_tables(0)
    calls = CallCounter()
    tasks = idle_tasks(params["tasks"], calls)
    postgres = vendor() == "postgresql"
    sampler = ActivitySampler(SAMPLE_INTERVAL) if postgres else None
    runner = Runner(tasks, around_attempt=profiles.around_attempt if profiles else None)
    runner.start()
    time.sleep(params["warmup"])
    with connect() if postgres else contextlib.nullcontext() as conn:
        before = server_counts(conn) if conn else None
        samples_before = len(sampler.samples) if sampler else 0
        calls_before = calls.calls
        meter = Meter(counter)
        meter.start()
        time.sleep(params["seconds"])
        meter.stop()
        attempts = calls.calls - calls_before
        after = server_counts(conn) if conn else None
    # The window's samples only: while the runner starts, the calling thread's
    # connection and the listener's probe are open for a moment besides its own.
    samples = sampler.stop()[samples_before:] if sampler else []
    server = None
    if before and after:
        own = len(samples) + COUNTS_READ
        server = server_delta(before, after, own)
    runner.stop(timeout=30)
    if profiles:
        profiles.dump()
    result = idle_result(
        runner.planton.max_workers, len(tasks), attempts, meter, [s.connections for s in samples]
    )
    return {**result, "server": server}


def idle_result(
    workers: int, tasks: int, attempts: int, meter: Meter, samples: list[int]
) -> Result:
    """The idle table's figures, and the check that the tasks were attempted often enough.

    ``samples``: the database's connections, as sampled meanwhile (none on SQLite).
    """
    queries = total(meter.queries)
    # The sampler is the benchmark's, not the runner's.
    runner_cpu = meter.cpu - meter.threads.get(SAMPLER_THREAD, 0.0)
    return {
        "tasks": tasks,
        "workers": workers,
        "setting_workers": planton_settings().max_workers,
        "seconds": meter.wall,
        "cpu": meter.cpu,
        "runner_cpu": runner_cpu,
        "cpu_share": runner_cpu / meter.wall,
        "cpu_us_per_attempt": 1e6 * runner_cpu / attempts if attempts else None,
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
