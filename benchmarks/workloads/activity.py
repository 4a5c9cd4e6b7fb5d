"""What the database server sees while a run is measured (PostgreSQL): its own connection.

:class:`ActivitySampler` counts, every ``interval`` seconds, the database's
connections and the lock requests waiting in ``pg_locks``; :func:`server_counts`
reads the server's cumulative counters (``pg_stat_database``, and
``pg_stat_statements`` when the extension is loaded), so that a window's
statements are the difference of two reads. Both use a psycopg connection
of the benchmark's own, in autocommit: each of its statements is one
transaction, which the figures subtract.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

from .tables import psycopg_conninfo

#: The sampler's thread: its CPU is the benchmark's, not the runner's.
SAMPLER_THREAD = "bench-activity"
#: Transactions of one read of the server's counters (pg_stat_database, pg_stat_statements).
COUNTS_READ = 2

#: The ``application_name`` of the benchmark's own connections, left out of the counts.
APPLICATION_NAME = "planton-bench"
ACTIVITY_SQL = (
    "SELECT (SELECT count(*) FROM pg_stat_activity "
    f"WHERE datname = current_database() AND application_name <> '{APPLICATION_NAME}'), "
    "w.waiting, w.kinds FROM (SELECT count(*) AS waiting, "
    "string_agg(l.locktype || ' ' || l.mode || coalesce(' ' || l.relation::regclass::text, ''), "
    "'; ') AS kinds "
    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE NOT l.granted AND a.datname = current_database()) w"
)
DATABASE_SQL = (
    "SELECT xact_commit + xact_rollback, tup_returned, tup_fetched, "
    "tup_inserted + tup_updated + tup_deleted "
    "FROM pg_stat_database WHERE datname = current_database()"
)
STATEMENTS_SQL = (
    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


class Activity(NamedTuple):
    """One sample: connections to the database, and lock requests not granted."""

    connections: int
    waiting: int
    #: What the waiting requests wait for: ``transactionid ShareLock; ...``.
    kinds: str = ""


class ServerCounts(NamedTuple):
    """The server's cumulative counters for this database at one moment."""

    transactions: int
    rows_returned: int
    rows_fetched: int
    rows_written: int
    #: ``sum(calls)`` of ``pg_stat_statements``; None when it is not loaded.
    statements: int | None


def connect() -> Any:
    """A psycopg connection of the benchmark's own, in autocommit, not counted as the runners'.

    Imported here, not at the top: on SQLite psycopg is never loaded, and
    loading it would add some 10 MiB to the run's peak memory.
    """
    import psycopg

    return psycopg.connect(**psycopg_conninfo(), autocommit=True, application_name=APPLICATION_NAME)


def server_counts(conn: Any) -> ServerCounts:
    """Read the counters now (each read is one more transaction, which callers subtract)."""
    import psycopg

    row = conn.execute(DATABASE_SQL).fetchone()
    try:
        found = conn.execute(STATEMENTS_SQL).fetchone()
        statements = int(found[0]) if found else None
    except psycopg.Error:  # the extension is not installed, or not preloaded
        statements = None
    transactions, returned, fetched, written = (int(value) for value in row)
    return ServerCounts(transactions, returned, fetched, written, statements)


class ActivitySampler:
    """Samples :class:`Activity` every ``interval`` s in a thread of its own, until stopped."""

    def __init__(self, interval: float) -> None:
        self.samples: list[Activity] = []
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name=SAMPLER_THREAD, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        with connect() as conn:
            while not self._stop.wait(self._interval):
                row = conn.execute(ACTIVITY_SQL).fetchone()
                self.samples.append(
                    Activity(int(row[0]), int(row[1]), row[2] or "") if row else Activity(0, 0)
                )

    def stop(self) -> list[Activity]:
        """Stop sampling; the samples taken."""
        self._stop.set()
        self._thread.join(timeout=5)
        return list(self.samples)


def server_delta(before: ServerCounts, after: ServerCounts, own: int) -> dict[str, int | None]:
    """What the server did in the window, less the benchmark's own transactions (and statements)."""
    statements = (
        None
        if before.statements is None or after.statements is None
        else after.statements - before.statements - own
    )
    return {
        "transactions": after.transactions - before.transactions - own,
        "statements": statements,
        "rows_read": (after.rows_returned - before.rows_returned)
        + (after.rows_fetched - before.rows_fetched),
        "rows_written": after.rows_written - before.rows_written,
    }
