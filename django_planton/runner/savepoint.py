"""A savepoint that costs nothing until the code it guards touches the database.

A cycle runs the user's ``schedule`` inside the cycle's transaction, behind a
savepoint, so that a failing schedule's claims roll back while the task's row
stays locked. Most attempts of a quiet task, though, run a schedule that
returns nothing without a single query (a cache says there is no work, a
clock says it is not time yet), and two round trips per attempt for a
savepoint nobody needs are most of what such an attempt costs.

:class:`LazySavepoint` is a Django execute wrapper: it takes the savepoint
right before the first statement the guarded code sends through the
connection, so nothing is sent for code that sends nothing. Statements sent
around Django (through the raw DB-API connection) are not seen, and so not
guarded: a schedule doing that must not rely on the rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["LazySavepoint"]


class LazySavepoint:
    """Take a savepoint on first use inside ``with``; :meth:`release` or :meth:`rollback` after.

    It is registered in the connection's ``savepoint_ids`` like the
    savepoint of an ``atomic`` block, so ``transaction.on_commit`` callbacks
    registered by the guarded code are dropped when it rolls back.
    """

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.sid: str | None = None
        self._taking = False

    def __enter__(self) -> LazySavepoint:
        # What ``connection.execute_wrapper()`` does, without its generator:
        # this runs once per attempt of every quiet task.
        self.connection.execute_wrappers.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.connection.execute_wrappers.pop()

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        if self.sid is None and not self._taking:
            # The savepoint's own statement passes through this wrapper too.
            self._taking = True
            try:
                sid = self.connection.savepoint()
            finally:
                self._taking = False
            if sid is not None:
                # Before the savepoint of an atomic block being entered (its
                # SAVEPOINT may be the statement that got us here), so that
                # they nest in the order they were taken.
                self.connection.savepoint_ids.append(sid)
                self.sid = sid
        return execute(sql, params, many, context)

    @property
    def taken(self) -> bool:
        return self.sid is not None

    def release(self) -> None:
        """Keep what the guarded code did."""
        if self.sid is not None:
            self._forget()
            self.connection.savepoint_commit(self.sid)

    def rollback(self) -> None:
        """Undo what the guarded code did, with its ``on_commit`` callbacks."""
        if self.sid is None:
            return  # nothing was sent, nothing to undo
        # An error swallowed inside an ``atomic(savepoint=False)`` of the
        # guarded code marks the whole transaction broken, and Django would
        # refuse even the rollback; rolling back to this savepoint mends it.
        self.connection.needs_rollback = False
        self.connection.savepoint_rollback(self.sid)
        self._forget()
        self.connection.savepoint_commit(self.sid)

    def _forget(self) -> None:
        ids = self.connection.savepoint_ids
        if self.sid in ids:
            ids.remove(self.sid)
