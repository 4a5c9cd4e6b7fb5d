"""What every measured run shares: Django set-up, query counting, data reset, checks.

Imported by the child processes only (:mod:`benchmarks.workloads`); the
orchestrator (:mod:`benchmarks.run`) does not import Django at all.
"""

from __future__ import annotations

import cProfile
import json
import os
import resource
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

RESULT_PREFIX = "BENCHMARK-RESULT "


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()


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

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, ctx: Any):
        kind = _classify(sql)
        with self._lock:
            self.counts[kind] += 1
        return execute(sql, params, many, ctx)

    def install(self) -> None:
        from django.db import connections
        from django.db.backends.signals import connection_created

        def on_created(sender: Any, connection: Any, **kwargs: Any) -> None:
            if self not in connection.execute_wrappers:
                connection.execute_wrappers.append(self)

        connection_created.connect(on_created, weak=False)
        for connection in connections.all(initialized_only=True):
            if self not in connection.execute_wrappers:
                connection.execute_wrappers.append(self)

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)


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


def _classify(sql: str) -> str:
    head = sql.lstrip()[:6].upper()
    kind = next((kind for prefix, kind in _KINDS.items() if head.startswith(prefix)), "OTHER")
    # A cycle starts by reading (on PostgreSQL: locking) its task's row.
    if kind == "SELECT" and _CYCLE_MARK in sql and not sql.startswith("SELECT 1 AS"):
        return "CYCLE"
    return kind


def total(counts: Counter[str]) -> int:
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
    """CPU seconds of each live thread of this process, by thread name (Linux ``/proc``)."""
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


def vendor() -> str:
    from django.db import connection

    return connection.vendor


def reset_tables(accounts: int) -> None:
    """Empty the accounts and both scheduler tables, then create ``accounts`` owed an e-mail.

    Plain SQL, not model instances: building 20,000 objects in Python would
    set this process's peak memory before anything is measured.
    """
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "TRUNCATE accounts_useraccount, maintenance_task_execution, maintenance_task "
                "RESTART IDENTITY"
            )
            cursor.execute(
                "INSERT INTO accounts_useraccount (email, created_at) "
                "SELECT 'user' || n || '@bench.example', now() FROM generate_series(1, %s) n",
                [accounts],
            )
        else:
            for table in ("maintenance_task_execution", "maintenance_task", "accounts_useraccount"):
                cursor.execute(f"DELETE FROM {table}")
            cursor.execute(
                "DELETE FROM sqlite_sequence WHERE name IN "
                "('maintenance_task_execution', 'maintenance_task', 'accounts_useraccount')"
            )
            cursor.execute(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %s) "
                "INSERT INTO accounts_useraccount (email, created_at) "
                "SELECT 'user' || n || '@bench.example', CURRENT_TIMESTAMP FROM g",
                [accounts],
            )
    with connection.cursor() as cursor:
        # Fresh statistics, so every run plans the same way.
        cursor.execute("ANALYZE")


def close_connection() -> None:
    from django.db import connection

    connection.close()


@dataclass
class Checks:
    """Correctness of a drain: every account processed exactly once, nothing left running."""

    problems: list[str] = field(default_factory=list)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.problems.append(message)


def check_drained(task_name: str, accounts: int, concurrency: int) -> list[str]:
    """Compare the accounts and the task's executions with what a perfect drain leaves.

    Every account processed, each by exactly one execution, none left running
    or failed, and never more than ``concurrency`` executions running at once
    (from their ``started_at``/``ended_at``).
    """
    from django.db import connection

    checks = Checks()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM accounts_useraccount WHERE email_sent_at IS NULL")
        (owed,) = cursor.fetchone()
        cursor.execute("SELECT id FROM accounts_useraccount")
        account_ids = {str(row[0]) for row in cursor.fetchall()}
        cursor.execute(
            "SELECT e.instruction, e.ended_at IS NULL, e.error IS NOT NULL, "
            "e.started_at, e.ended_at "
            "FROM maintenance_task_execution e JOIN maintenance_task t "
            "ON t.id = e.maintenance_task_id WHERE t.nid = %s",
            [task_name],
        )
        rows = cursor.fetchall()
    instructions = [row[0] for row in rows]
    running = sum(1 for row in rows if row[1])
    failed = sum(1 for row in rows if row[2])
    checks.expect(len(account_ids) == accounts, f"{len(account_ids)} accounts, not {accounts}")
    checks.expect(owed == 0, f"{owed} account(s) never processed")
    checks.expect(
        len(instructions) == accounts,
        f"{len(instructions)} executions for {accounts} accounts",
    )
    duplicates = len(instructions) - len(set(instructions))
    checks.expect(duplicates == 0, f"{duplicates} account(s) dispatched more than once")
    checks.expect(set(instructions) == account_ids, "executions do not match the accounts")
    checks.expect(running == 0, f"{running} execution(s) left running")
    checks.expect(failed == 0, f"{failed} execution(s) failed")
    most = most_running_at_once([(row[3], row[4]) for row in rows if row[4] is not None])
    checks.expect(most <= concurrency, f"{most} executions ran at once, concurrency {concurrency}")
    return checks.problems


def most_running_at_once(spans: list[tuple[Any, Any]]) -> int:
    """The most (started_at, ended_at) spans open at once; an end at t comes before a start at t."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def emit(result: dict[str, Any]) -> None:
    """Hand the result to the orchestrator: one JSON line on stdout."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


class ThreadProfiles:
    """cProfile for the runner's worker threads (``PLANTON_BENCH_PROFILE=<file>``).

    cProfile sees one thread; this wraps each cycle of the core loop in the
    worker thread's own profile (timed by the thread's CPU clock) and merges
    them when the run ends. Used to
    find where the time goes, never while figures are being taken for the table.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    @contextmanager
    def profiling(self) -> Iterator[None]:
        profile = getattr(self._local, "profile", None)
        if profile is None:
            # CPU time of this thread, not wall time: waiting on the database is not cost here.
            profile = self._local.profile = cProfile.Profile(time.thread_time)
            with self._lock:
                self._profiles.append(profile)
        profile.enable()
        try:
            yield
        finally:
            profile.disable()

    def patch_planton(self) -> None:
        from django_planton.core import Planton

        original = Planton._attempt
        profiles = self

        def _attempt(planton: Any, *args: Any, **kwargs: Any) -> None:
            with profiles.profiling():
                original(planton, *args, **kwargs)

        Planton._attempt = _attempt  # type: ignore[method-assign]

    def dump(self) -> None:
        import pstats

        with self._lock:
            profiles = list(self._profiles)
        if not profiles:
            return
        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            stats.add(profile)
        stats.dump_stats(self.path)


def maybe_profile() -> ThreadProfiles | None:
    path = os.environ.get("PLANTON_BENCH_PROFILE")
    if not path:
        return None
    profiles = ThreadProfiles(path)
    profiles.patch_planton()
    return profiles
