"""Ending an execution survives a short outage: reconnect and retry, with back-off.

A receiver that finished its work during a database outage of a few seconds
used to lose its ``complete()``: the execution then held its slot until the
maximum duration ended it. ``complete()``, ``fail()`` and ``heartbeat()``
(on an execution or a queryset) retry instead, for up to
``PLANTON_ENDING_RETRY_SECONDS`` (15 s by default), backing off from 0.25 s
to 4 s between tries. Past that the error is raised, and the execution is
left to the maximum-duration reaper as before.

Only a lost connection is retried (the connection is unusable afterwards);
an error of the statement itself (a constraint, a timeout on a live
connection) is raised at once. Nothing is retried inside the caller's own
``transaction.atomic()`` block: its transaction is gone with the connection,
and only the caller can redo it.

Each of these writes can be repeated safely: ending an already ended
execution changes nothing. When the connection was lost during the commit,
whether the first try took effect is unknown; the retry then finds the
execution ended and returns ``False`` (or 0).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from .conf import raw_setting

__all__ = ["retrying_lost_connections"]

logger = logging.getLogger("django_planton")

T = TypeVar("T")

_FIRST_PAUSE = 0.25
_LONGEST_PAUSE = 4.0


def retrying_lost_connections(using: str, operation: Callable[[], T], *, what: str) -> T:
    """``operation()``, tried again after a lost connection for up to the configured seconds.

    ``what`` names the operation in the log: one warning when the first try
    fails, one line when a retry succeeds.
    """
    deadline: float | None = None  # read on the first failure: the hot path reads nothing
    pause = _FIRST_PAUSE
    tries = 0
    while True:
        tries += 1
        try:
            result = operation()
        except (OperationalError, InterfaceError) as error:
            if deadline is None:
                seconds = float(raw_setting("PLANTON_ENDING_RETRY_SECONDS"))  # type: ignore[arg-type]
                deadline = time.monotonic() + seconds
            if not _connection_lost(using) or time.monotonic() + pause > deadline:
                raise
            if tries == 1:
                logger.warning(
                    "%s: the database connection was lost (%s); retrying for up to %gs.",
                    what,
                    str(error).strip() or type(error).__name__,
                    seconds,
                )
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)
            continue
        if tries > 1:
            logger.info("%s: done after %d tries.", what, tries)
        return result


def _connection_lost(using: str) -> bool:
    """Whether the last error lost the connection (then drop it), outside any transaction."""
    connection = connections[using]
    if connection.in_atomic_block:
        return False  # the caller's transaction is gone: only the caller can redo it
    if connection.connection is None:
        return True  # failed to connect
    try:
        usable = connection.is_usable()
    except DatabaseError:
        usable = False
    if usable:
        return False
    with contextlib.suppress(DatabaseError):
        connection.close()
    connection.connection = None
    return True
