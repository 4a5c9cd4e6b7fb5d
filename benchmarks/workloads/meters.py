"""What a run measures: wall and CPU time, CPU by thread, statements, peak memory.

Counting statements and reading ``/proc`` cost a little, so only what the
table prints is measured, and only between ``Meter.start()`` and ``stop()``.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created

_CYCLE_MARK = 'FROM "maintenance_task" WHERE "maintenance_task"."nid" = '
_KINDS = {
    "SELECT": "SELECT",
    "UPDATE": "UPDATE",
    "INSERT": "INSERT",
    "DELETE": "DELETE",
    "BEGIN": "BEGIN",
    "SAVEPO": "SAVEPOINT",
    "RELEAS": "RELEASE",
    "ROLLBA": "ROLLBACK",
}


def classify(sql: str) -> str:
    """The kind of a statement; ``CYCLE`` for the read of a task's row that starts a cycle."""
    head = sql.lstrip()[:6].upper()
    kind = next((kind for prefix, kind in _KINDS.items() if head.startswith(prefix)), "OTHER")
    # A cycle starts by reading (on PostgreSQL: locking) its task's row.
    if kind == "SELECT" and _CYCLE_MARK in sql and not sql.startswith("SELECT 1 AS"):
        return "CYCLE"
    return kind


class QueryCounter:
    """A Django execute wrapper that counts the statements of every connection.

    Installed on each connection as it is created (``connection_created``),
    so the runner's worker threads, its housekeeping thread and the
    benchmark's own threads are all counted. It counts what goes through a
    Django cursor: ``BEGIN`` and ``COMMIT``, which the driver sends itself,
    are not statements here. The listener's own psycopg connection is not a
    Django connection (it only sends ``LISTEN`` once).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, ctx: Any
    ) -> Any:
        kind = classify(sql)
        with self._lock:
            self.counts[kind] += 1
        return execute(sql, params, many, ctx)

    def install(self) -> None:
        """Wrap every connection, those open now and those opened later by any thread."""

        def on_created(sender: Any, connection: Any, **kwargs: Any) -> None:
            self._wrap(connection)

        connection_created.connect(on_created, weak=False)
        for connection in connections.all(initialized_only=True):
            self._wrap(connection)

    def _wrap(self, connection: Any) -> None:
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)

    def snapshot(self) -> Counter[str]:
        """A copy, so a phase's statements are the difference of two snapshots."""
        with self._lock:
            return Counter(self.counts)


def counting() -> QueryCounter:
    """A counter installed on every connection from now on: the first thing a run does."""
    counter = QueryCounter()
    counter.install()
    return counter


def total(counts: Counter[str]) -> int:
    """All statements of every kind, cycles included."""
    return sum(counts.values())


@dataclass
class Meter:
    """Wall time, CPU time of the whole process and statements, between start and stop."""

    counter: QueryCounter | None = None
    wall: float = 0.0
    cpu: float = 0.0
    #: CPU seconds by thread name between start and stop.
    threads: dict[str, float] = field(default_factory=dict)
    queries: Counter[str] = field(default_factory=Counter)
    _t0: float = 0.0
    _c0: float = 0.0
    _q0: Counter[str] = field(default_factory=Counter)
    _threads0: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._q0 = self.counter.snapshot() if self.counter else Counter()
        self._threads0 = thread_cpu()
        self._c0 = time.process_time()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._t0
        self.cpu = time.process_time() - self._c0
        self.threads = {
            name: seconds - self._threads0.get(name, 0.0) for name, seconds in thread_cpu().items()
        }
        if self.counter:
            self.queries = self.counter.snapshot() - self._q0


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by thread name (Linux ``/proc``).

    The runner's numbered threads (``planton-worker_3``) are summed under one name.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    result: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except (OSError, TypeError):
            continue
        # utime and stime are fields 14 and 15; the split starts at field 3.
        name = thread.name.rsplit("_", 1)[0] if thread.name.startswith("planton-") else thread.name
        result[name] = result.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return result


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
