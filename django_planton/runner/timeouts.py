"""Limits on the runner's connections: how long to connect, how long a statement may run.

Without them, a database that accepts connections and never answers froze
``run_planton`` silently, at start-up and mid-run. The limits hold for every
connection the process opens to the runner's database while the runner
runs: its cycles (the schedules in them), the receivers that run in its
threads, housekeeping and the listener.

- ``PLANTON_CONNECT_TIMEOUT`` goes into the database's ``OPTIONS`` as
  ``connect_timeout`` (PostgreSQL's libpq, MySQL's client), unless the
  project set one there.
- ``PLANTON_STATEMENT_TIMEOUT`` is set on each new connection, once:
  ``statement_timeout`` on PostgreSQL, ``max_statement_time`` on MariaDB
  (``max_execution_time``, SELECTs only, on MySQL). The server enforces it,
  lock waits included. SQLite has its own ``timeout`` option for lock waits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

__all__ = ["ConnectionLimits", "statement_timeout_sql"]


def statement_timeout_sql(
    connection: BaseDatabaseWrapper, seconds: float | None, *, transaction_only: bool = False
) -> tuple[str, list[Any]]:
    """The statement that limits this connection's statements to ``seconds``; empty if none.

    ``None`` gives the statement that puts the server's default back.
    ``transaction_only``: on PostgreSQL, for the current transaction only
    (MySQL and MariaDB have no such limit: the session's is set).
    """
    if seconds is None:
        return {
            "postgresql": ("RESET statement_timeout", []),
            "mysql": (
                "SET SESSION max_statement_time = DEFAULT"
                if getattr(connection, "mysql_is_mariadb", False)
                else "SET SESSION max_execution_time = DEFAULT",
                [],
            ),
        }.get(connection.vendor, ("", []))
    if connection.vendor == "postgresql":
        # set_config() takes parameters, where SET does not.
        return "SELECT set_config('statement_timeout', %s, %s)", [
            f"{round(seconds * 1000)}",
            transaction_only,
        ]
    if connection.vendor == "mysql":
        if getattr(connection, "mysql_is_mariadb", False):
            return "SET SESSION max_statement_time = %s", [float(seconds)]
        return "SET SESSION max_execution_time = %s", [round(seconds * 1000)]
    return "", []


class ConnectionLimits:
    """Installs the connect and statement timeouts on one alias while a runner runs."""

    def __init__(
        self, using: str, *, connect_timeout: int | None, statement_timeout: float | None
    ) -> None:
        self.using = using
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._added_connect_timeout = False
        self.installed = False

    def install(self) -> None:
        """Apply the limits to connections opened from now on (and to this thread's, if open).

        Calling it again does nothing until :meth:`uninstall`.
        """
        if self.installed:
            return
        self.installed = True
        connection = connections[self.using]
        if self.connect_timeout is not None and connection.vendor in ("postgresql", "mysql"):
            # One OPTIONS dict is shared by every thread's connection to the alias.
            options = connection.settings_dict.setdefault("OPTIONS", {})
            if "connect_timeout" not in options:
                options["connect_timeout"] = self.connect_timeout
                self._added_connect_timeout = True
        if self.statement_timeout is None:
            return
        connection_created.connect(self._limit_statements, dispatch_uid=self._uid())
        if connection.connection is not None:
            self.limit(connection)

    def uninstall(self) -> None:
        """Take the limits off: new connections, and this thread's if open, lose them."""
        if not self.installed:
            return
        self.installed = False
        connection_created.disconnect(dispatch_uid=self._uid())
        connection = connections[self.using]
        if self._added_connect_timeout:
            connection.settings_dict.get("OPTIONS", {}).pop("connect_timeout", None)
            self._added_connect_timeout = False
        if self.statement_timeout is not None and connection.connection is not None:
            with contextlib.suppress(DatabaseError):
                _execute(connection, statement_timeout_sql(connection, None))

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The limits for the block, unless they were installed already (then left so)."""
        if self.installed:
            yield
            return
        self.install()
        try:
            yield
        finally:
            self.uninstall()

    def limit(self, connection: BaseDatabaseWrapper) -> None:
        """Set the statement timeout on an open connection."""
        if self.statement_timeout is not None:
            _execute(connection, statement_timeout_sql(connection, self.statement_timeout))

    def _limit_statements(
        self, sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any
    ) -> None:
        if connection.alias == self.using:
            self.limit(connection)

    def _uid(self) -> str:
        return f"django_planton.statement_timeout.{self.using}.{id(self)}"


def _execute(connection: BaseDatabaseWrapper, statement: tuple[str, list[Any]]) -> None:
    sql, params = statement
    if sql:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
