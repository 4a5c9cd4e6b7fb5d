"""django-planton's settings: one typed object, with every default in one place.

Read with :func:`planton_settings` at the time of use (not at import), so
that tests and ``override_settings`` see the values in force. The system
checks (:mod:`django_planton.checks`) validate the raw values first and say
what is wrong with a bad one; this module only converts.
"""

from __future__ import annotations

import math
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings

from .core import BATCH_SIZE

__all__ = ["DEFAULTS", "PlantonSettings", "planton_settings", "raw_setting"]

DEFAULTS: dict[str, Any] = {
    # How long completed executions are kept before the runner prunes them.
    # None keeps them forever.
    "PLANTON_KEEP_COMPLETED_EXECUTIONS": timedelta(days=7),
    # Make the executions table UNLOGGED on PostgreSQL (read by the migration).
    "PLANTON_UNLOGGED_EXECUTIONS": True,
    # Threads that run cycles in one run_planton process; each holds one
    # database connection while it works.
    "PLANTON_MAX_WORKERS": 4,
    # The most quiet tasks (their last attempt dispatched nothing) that fall
    # due together and share one transaction; 1 attempts every task alone.
    "PLANTON_BATCH_SIZE": BATCH_SIZE,
    # Seconds before looking again at a task whose row another process holds.
    "PLANTON_POLL_INTERVAL": 1.0,
    # Longest wait before a runner re-reads a task's row, so that an
    # operator's "attempt now" or a new next-attempt time is seen in time.
    "PLANTON_MAX_WAIT": 30.0,
    # Seconds between two rounds of housekeeping (ending overdue executions,
    # pruning old ones).
    "PLANTON_HOUSEKEEPING_INTERVAL": 5.0,
    # Seconds between two heartbeats of a runner's row (planton_runner); a
    # runner not seen for three intervals is dead.
    "PLANTON_HEARTBEAT_INTERVAL": 5.0,
    # Longest instruction, in characters, that a schedule may return.
    "PLANTON_MAX_INSTRUCTION_LENGTH": 1024,
    # Recorded on each execution; defaults to this machine's host name.
    "PLANTON_HOSTNAME": None,
    # Seconds a cycle may run before a warning names its tasks (and another
    # says when it ended). None: no warning.
    "PLANTON_SLOW_CYCLE_WARNING": 10.0,
    # Seconds a batch of quiet tasks may spend on their schedules: the tasks
    # not reached by then go back to be attempted in another cycle, and a
    # task whose schedule alone took longer is attempted alone from then on.
    "PLANTON_BATCH_TIME_BUDGET": 1.0,
    # Seconds the runner's connections wait to connect (PostgreSQL, MySQL);
    # None: the driver's default (no limit). A connect_timeout in the
    # database's OPTIONS wins.
    "PLANTON_CONNECT_TIMEOUT": 10,
    # Seconds a statement of the runner's connections may run (the
    # schedules' and the receivers' in its threads included): PostgreSQL's
    # statement_timeout, MariaDB's max_statement_time. None: no limit.
    "PLANTON_STATEMENT_TIMEOUT": 60.0,
    # Seconds complete(), fail() and heartbeat() keep retrying a lost
    # connection before they raise. 0: no retry.
    "PLANTON_ENDING_RETRY_SECONDS": 15.0,
    # The database alias whose connection LISTENs for wake-ups (PostgreSQL):
    # one that reaches the server directly, past a pooler in transaction
    # mode. None: the runner's own database.
    "PLANTON_LISTEN_DATABASE": None,
    # Where the task_dispatched receivers of tasks registered without an
    # executor run: an Executor instance, or the dotted path of a class that
    # takes no arguments. None: django_planton.executors.Threads().
    "PLANTON_EXECUTOR": None,
}


def raw_setting(name: str) -> object:
    """A setting as the project gave it (or its default), unconverted; for the checks."""
    return getattr(settings, name, DEFAULTS[name])


@dataclass(frozen=True, slots=True, kw_only=True)
class PlantonSettings:
    """The settings in force; each attribute is the ``PLANTON_`` setting of its name."""

    keep_completed_executions: timedelta | None
    unlogged_executions: bool
    max_workers: int
    batch_size: int
    poll_interval: float
    max_wait: float
    housekeeping_interval: float
    heartbeat_interval: float
    max_instruction_length: int
    hostname: str
    slow_cycle_warning: float | None
    batch_time_budget: float
    connect_timeout: int | None
    statement_timeout: float | None
    ending_retry_seconds: float
    listen_database: str | None


def planton_settings() -> PlantonSettings:
    """Read the settings in force now."""
    value: dict[str, Any] = {name: raw_setting(name) for name in DEFAULTS}
    return PlantonSettings(
        keep_completed_executions=value["PLANTON_KEEP_COMPLETED_EXECUTIONS"],
        unlogged_executions=bool(value["PLANTON_UNLOGGED_EXECUTIONS"]),
        max_workers=int(value["PLANTON_MAX_WORKERS"]),
        batch_size=int(value["PLANTON_BATCH_SIZE"]),
        poll_interval=float(value["PLANTON_POLL_INTERVAL"]),
        max_wait=float(value["PLANTON_MAX_WAIT"]),
        housekeeping_interval=float(value["PLANTON_HOUSEKEEPING_INTERVAL"]),
        heartbeat_interval=float(value["PLANTON_HEARTBEAT_INTERVAL"]),
        max_instruction_length=int(value["PLANTON_MAX_INSTRUCTION_LENGTH"]),
        hostname=str(value["PLANTON_HOSTNAME"] or socket.gethostname()),
        slow_cycle_warning=_seconds_or_none(value["PLANTON_SLOW_CYCLE_WARNING"]),
        batch_time_budget=float(value["PLANTON_BATCH_TIME_BUDGET"]),
        connect_timeout=(
            None
            if value["PLANTON_CONNECT_TIMEOUT"] is None
            # libpq takes whole seconds, and reads 0 as "wait forever".
            else max(1, math.ceil(value["PLANTON_CONNECT_TIMEOUT"]))
        ),
        statement_timeout=_seconds_or_none(value["PLANTON_STATEMENT_TIMEOUT"]),
        ending_retry_seconds=float(value["PLANTON_ENDING_RETRY_SECONDS"]),
        listen_database=value["PLANTON_LISTEN_DATABASE"] or None,
    )


def _seconds_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
