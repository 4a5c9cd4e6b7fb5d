"""django-planton's settings, each with a default.

Read through :func:`get_setting` at the time of use (not at import), so that
tests and ``override_settings`` see the value in force.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

from django.conf import settings

from .core import BATCH_SIZE

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


def get_setting(name: str) -> Any:
    value = getattr(settings, name, DEFAULTS[name])
    if name == "PLANTON_HOSTNAME" and not value:
        return socket.gethostname()
    return value
