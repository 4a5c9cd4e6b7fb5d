"""The header of the report: the machine and the software the figures come from.

Figures are only comparable on the same machine and versions, so the
report says which they were.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import threading
import time
from importlib import metadata
from pathlib import Path

import psycopg

from .nodejs import versions_line
from .report import load_average


def cpu_model() -> str:
    """The processor's name, from ``/proc/cpuinfo`` on Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def postgres_version(url: str) -> str:
    """Asked of the server itself, since that is the one the figures come from."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def header_lines(run: str, postgres_url: str | None) -> list[str]:
    """The first lines of the report: which run, on what, with which settings."""
    workers = int(os.environ.get("PLANTON_MAX_WORKERS", "4"))
    return [
        f"django-planton benchmarks ({run} run)",
        *machine_lines(postgres_url),
        floor_line(postgres_url),
        f"settings: benchmarks.settings (DEBUG off, client-side binding, no prepared "
        f"statements unless said), PLANTON_MAX_WORKERS={workers}",
        "",
    ]


def machine_lines(postgres_url: str | None) -> list[str]:
    """The machine, its load at the start, and the versions of everything measured."""
    versions = [
        f"Python {platform.python_version()}",
        f"Django {metadata.version('django')}",
        f"psycopg {metadata.version('psycopg')}",
        f"PostgreSQL {postgres_version(postgres_url) if postgres_url else 'not run'}",
        f"SQLite {sqlite3.sqlite_version}",
        versions_line(),
    ]
    return [
        f"machine:  {os.cpu_count()} cores, {cpu_model()}, {platform.system()} "
        f"{platform.release()}, load average {load_average()} at start",
        f"software: {', '.join(versions)}",
    ]


#: Round trips and hand-offs timed for the floor line.
FLOOR_ROUND_TRIPS = 2_000
FLOOR_HAND_OFFS = 2_000


def floor_line(postgres_url: str | None) -> str:
    """What one round trip and one hand-off between threads cost this process, measured now.

    Every statement pays the first and every receiver thread the second,
    whatever runs them. Both are mostly system calls: where those are dear
    (some virtual machines), both take more CPU, and the ratios of a
    threaded runner to a single-threaded loop fall with them.
    """
    trip = round_trip_cost(postgres_url) if postgres_url else None
    trip_text = (
        f"a SELECT 1 round trip (psycopg) {trip[0]:.0f} µs of client CPU, {trip[1]:.0f} µs wall"
        if trip
        else "no PostgreSQL round trip (not run)"
    )
    return f"floor:    {trip_text}; a hand-off between two threads {hand_off_cost():.0f} µs of CPU"


def round_trip_cost(url: str) -> tuple[float, float]:
    """Client CPU and wall time of one ``SELECT 1``, in µs (the median of 5 rounds)."""
    cpu: list[float] = []
    wall: list[float] = []
    per_round = FLOOR_ROUND_TRIPS // 5
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
        for _ in range(5):
            started, clock = time.perf_counter(), time.process_time()
            for _ in range(per_round):
                cursor.execute("SELECT 1")
            cpu.append((time.process_time() - clock) / per_round * 1e6)
            wall.append((time.perf_counter() - started) / per_round * 1e6)
    return sorted(cpu)[2], sorted(wall)[2]


def hand_off_cost() -> float:
    """CPU (µs) of handing control from one thread to another and back, per hand-off.

    Two threads take turns through two events, as a runner's worker hands
    executions to a receiver thread and hears back.
    """
    ping, pong = threading.Event(), threading.Event()

    def answer() -> None:
        for _ in range(FLOOR_HAND_OFFS):
            ping.wait()
            ping.clear()
            pong.set()

    thread = threading.Thread(target=answer, daemon=True)
    clock = time.process_time()
    thread.start()
    for _ in range(FLOOR_HAND_OFFS):
        ping.set()
        pong.wait()
        pong.clear()
    thread.join()
    return (time.process_time() - clock) / (2 * FLOOR_HAND_OFFS) * 1e6
