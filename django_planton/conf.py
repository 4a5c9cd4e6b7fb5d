"""django-planton's settings: one typed object, with every default in one place.

Read with :func:`planton_settings` at the time of use (not at import), so
that tests and ``override_settings`` see the values in force. The system
checks (:mod:`django_planton.checks`) validate the raw values first and say
what is wrong with a bad one; this module only converts.
"""

from __future__ import annotations

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
    # Longest instruction, in characters, that a schedule may return.
    "PLANTON_MAX_INSTRUCTION_LENGTH": 1024,
    # Recorded on each execution; defaults to this machine's host name.
    "PLANTON_HOSTNAME": None,
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
    max_instruction_length: int
    hostname: str


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
        max_instruction_length=int(value["PLANTON_MAX_INSTRUCTION_LENGTH"]),
        hostname=str(value["PLANTON_HOSTNAME"] or socket.gethostname()),
    )
