"""The database's clock: one time for every runner, whatever its host's clock says.

Hosts drift, and a runner whose clock runs ten minutes ahead would store
next attempts ten minutes late and end other runners' executions as
overdue while they are still being worked on. So every time django-planton
stores or compares comes from the database:

- :class:`DatabaseNow` is the database's "now" as an ORM expression, for
  statements that can compute the time themselves (ending an execution, a
  heartbeat, the overdue test);
- :func:`now_sql` is the same as SQL text, for the statements built by hand;
- :class:`DatabaseClock` carries a time read from the database forward on
  this process's monotonic clock, so that a cycle reads the time once (in
  its first statement) and still stamps what it writes afterwards.

SQLite runs inside the process, so its clock is the process's clock: one
host, nothing to drift from. There the time is taken in Python.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.functions import Now
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone
from django.utils.dateparse import parse_datetime

__all__ = [
    "DatabaseClock",
    "DatabaseNow",
    "DatabaseNowPlus",
    "later",
    "now_sql",
    "read_database_now",
    "uses_process_clock",
]

# How long a time read from the database is carried forward before it is read
# again: a monotonic clock drifts from the database's by parts per million.
_MAX_AGE = 60.0

# The furthest ahead a time is stored: a back-off may ask for more seconds
# than a datetime can add.
_FURTHEST = timedelta(days=365 * 100)


def later(now: datetime, seconds: float) -> datetime:
    """``now`` plus ``seconds``, never past what a datetime can hold."""
    try:
        return now + min(timedelta(seconds=seconds), _FURTHEST)
    except OverflowError:
        return now + _FURTHEST


class DatabaseNowPlus:
    """The database's time at the statement that writes it, plus ``seconds``.

    A value for :func:`~django_planton.sql.update_rows`: a task's next
    attempt counted from the write itself. Counted from a time carried
    forward since the cycle's first statement, it comes out early when that
    statement ran long (it waited, or the server was busy): another runner
    would then find the task due before its delay is up.
    """

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"DatabaseNowPlus({self.seconds!r})"

    def sql(self, connection: BaseDatabaseWrapper) -> str:
        """The SQL, with one parameter: :meth:`parameter`."""
        if connection.vendor == "postgresql":
            return f"({now_sql(connection)} + make_interval(secs => %s))"
        if connection.vendor == "mysql":
            return f"DATE_ADD({now_sql(connection)}, INTERVAL %s MICROSECOND)"
        raise NotImplementedError(f"no database time arithmetic for {connection.vendor}")

    def parameter(self, connection: BaseDatabaseWrapper) -> float | int:
        seconds = min(max(self.seconds, 0.0), _FURTHEST.total_seconds())
        return round(seconds * 1_000_000) if connection.vendor == "mysql" else seconds

    def on_process_clock(self, now: datetime) -> datetime:
        """The value where the database's clock is this process's (SQLite), at ``now``."""
        return later(now, self.seconds)


def now_sql(connection: BaseDatabaseWrapper) -> str:
    """The database's current time as SQL, in the form its datetime columns hold.

    For statements run with a parameter list (even an empty one): a literal
    ``%`` is written ``%%``.
    """
    if connection.vendor == "postgresql":
        # The time of the statement, not of the transaction's start: a cycle
        # stamps what it writes after the schedules ran.
        return "STATEMENT_TIMESTAMP()"
    if connection.vendor == "mysql":
        # Django stores UTC in MySQL's DATETIME columns when the connection's
        # time zone is UTC (the default with USE_TZ); CURRENT_TIMESTAMP would
        # follow the server's session time zone.
        if settings.USE_TZ and connection.timezone_name == "UTC":
            return "UTC_TIMESTAMP(6)"
        return "CURRENT_TIMESTAMP(6)"
    if connection.vendor == "sqlite":
        return "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW')"
    return "CURRENT_TIMESTAMP"


def uses_process_clock(connection: BaseDatabaseWrapper) -> bool:
    """Whether the database's clock is this process's (SQLite runs in the process).

    Then the time is taken in Python, at microseconds: SQLite's own "now"
    keeps milliseconds only, and costs a statement.
    """
    return connection.vendor == "sqlite"


class DatabaseNow(Now):
    """Django's ``Now()``, but in UTC on MySQL and MariaDB whatever the server's time zone.

    On SQLite it is this process's time, as a parameter (see :func:`uses_process_clock`).
    """

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, tuple[Any, ...]]:
        return "%s", (connection.ops.adapt_datetimefield_value(timezone.now()),)

    def as_mysql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, tuple[str | int, ...]]:
        # A template is %-formatted once more than a statement is.
        template = now_sql(connection).replace("%", "%%")
        return self.as_sql(compiler, connection, template=template, **extra_context)


def to_datetime(value: Any) -> datetime:
    """A time as the database returned it (aware, naive UTC, or text on SQLite), as Django's."""
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"The database returned {value!r} for the current time.")
        value = parsed
    if not isinstance(value, datetime):
        raise TypeError(f"The database returned {value!r} for the current time.")
    if settings.USE_TZ and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if not settings.USE_TZ and value.tzinfo is not None:
        return timezone.make_naive(value)
    return value


def read_database_now(using: str) -> datetime:
    """The database's current time: one round trip (none on SQLite)."""
    connection = connections[using]
    if uses_process_clock(connection):
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {now_sql(connection)}", [])
        row = cursor.fetchone()
    assert row is not None
    return to_datetime(row[0])


class DatabaseClock:
    """The database's time, read once and carried forward on this process's monotonic clock.

    A cycle observes the time its first statement returned; what it writes
    later (executions, the next attempt) is stamped ``observed + elapsed``.
    Thread-safe: the loop's workers share one clock.
    """

    def __init__(self, using: str, *, max_age: float = _MAX_AGE) -> None:
        self.using = using
        self.max_age = max_age
        self._lock = threading.Lock()
        self._observed: tuple[datetime, float] | None = None

    def observe(self, database_time: datetime) -> None:
        """Record a time the database just returned, counted from its arrival.

        The statement read it when it started on the server, so the carried
        clock errs early by the trip back (milliseconds): a next attempt is
        then due that much early. Counting from when the statement was sent
        would err late by the whole trip there, which a database that stops
        answering stretches to seconds: every next attempt stored by a cycle
        held up on its way would be that late. (An execution's start is not
        carried forward: the INSERT stamps it with the database's own time.)
        """
        with self._lock:
            self._observed = (database_time, time.monotonic())

    def now(self) -> datetime:
        """The database's time now; reads it when none was observed lately."""
        with self._lock:
            observed = self._observed
        if observed is not None:
            at, seen = observed
            elapsed = time.monotonic() - seen
            if elapsed <= self.max_age:
                return at + timedelta(seconds=elapsed)
        database_time = read_database_now(self.using)
        self.observe(database_time)
        return database_time
