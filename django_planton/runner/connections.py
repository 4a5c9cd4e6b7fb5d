"""Connection health of the runner's threads: keep a good connection, drop a broken one."""

from __future__ import annotations

import contextlib
import threading

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["ConnectionTracker", "drop_if_unusable", "ensure_usable"]


def ensure_usable(alias: str) -> None:
    """Drop this thread's connection if an error left it broken.

    Unlike ``close_old_connections()``, this keeps a healthy connection open
    whatever ``CONN_MAX_AGE`` says: a runner thread reconnecting every cycle
    would spend more on connecting than on scheduling.
    """
    connection = connections[alias]
    if connection.connection is None or connection.in_atomic_block:
        return
    if connection.errors_occurred or connection.get_autocommit() is not True:
        if connection.is_usable() and connection.get_autocommit():
            connection.errors_occurred = False
        else:
            connection.close()


def drop_if_unusable(alias: str) -> None:
    """After a database error outside a transaction: close this thread's dead connection."""
    connection = connections[alias]
    if connection.in_atomic_block:
        return
    try:
        if connection.connection is not None and not connection.is_usable():
            connection.close()
    except DatabaseError:
        connection.connection = None


class ConnectionTracker:
    """The connections the worker threads opened, so that they can be closed at the end."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._lock = threading.Lock()
        self._connections: set[BaseDatabaseWrapper] = set()

    def track(self) -> None:
        """Note this thread's connection (once)."""
        connection = connections[self.alias]
        if connection not in self._connections:
            connection.inc_thread_sharing()  # so that close_all() may close it
            with self._lock:
                self._connections.add(connection)

    def close_all(self) -> None:
        """Close every tracked connection; call once the loop stopped."""
        with self._lock:
            tracked, self._connections = self._connections, set()
        for connection in tracked:
            with contextlib.suppress(DatabaseError):
                connection.close()
