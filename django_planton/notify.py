"""Wake-ups across processes on PostgreSQL: a trigger NOTIFYs, runners LISTEN.

When an execution ends, its task may have a free slot and more work waiting.
In the process that ended it, the ``executions_ended`` signal wakes the
runner. Another process (a second runner, or a worker that completed the
execution by id) learns it from PostgreSQL: a statement-level trigger on the
executions table sends the ids of the tasks whose executions ended, once per
statement and only when the transaction commits. Other databases have no
such channel; there the runners fall back to their delays (polling).

Opt-in, also PostgreSQL only: :func:`wake_on_change` adds a trigger to one of
your tables that wakes a task when rows change there, so new work is
dispatched within milliseconds while the task's delay between idle attempts
stays long.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections

from .sql import (
    ENDED_CHANNEL,
    WAKE_CHANNEL,
    WAKE_FUNCTION_SQL,
    create_wake_trigger_sql,
    drop_wake_trigger_sql,
)

logger = logging.getLogger("django_planton")

_EVENTS = ("INSERT", "UPDATE", "DELETE")


def wake_on_change(
    model: str, task_name: str, *, events: Sequence[str] = ("INSERT", "UPDATE")
) -> Any:
    """A migration operation: wake ``task_name`` when ``events`` change ``model``'s table.

    ``model`` is an ``"app_label.ModelName"`` label. Put the operation in a
    migration of your app::

        operations = [wake_on_change("accounts.UserAccount", "send_user_email")]

    Every statement of those kinds on the table (once it commits) makes
    every runner attempt the task at once, whatever its delay and back-off,
    so the delay can stay long. The trigger is per statement, so a bulk
    insert wakes the task once. PostgreSQL only: elsewhere the operation
    does nothing and the task keeps its delays. Reversing it drops the
    trigger.
    """
    from django.db import migrations

    unknown = [event for event in events if event.upper() not in _EVENTS]
    if not events or unknown:
        raise ValueError(f"events must be some of {_EVENTS}, not {tuple(events)!r}")
    kinds = " OR ".join(event.upper() for event in events)
    trigger = "planton_wake_" + hashlib.sha1(task_name.encode()).hexdigest()[:16]

    def forward(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        table = schema_editor.quote_name(apps.get_model(model)._meta.db_table)
        schema_editor.execute(WAKE_FUNCTION_SQL)
        schema_editor.execute(create_wake_trigger_sql(trigger, table, kinds, task_name))

    def backward(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        table = schema_editor.quote_name(apps.get_model(model)._meta.db_table)
        schema_editor.execute(drop_wake_trigger_sql(trigger, table))

    return migrations.RunPython(forward, backward, elidable=False)


def listening_supported(using: str) -> bool:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import (  # type: ignore[import-untyped,unused-ignore]
        is_psycopg3,
    )

    return bool(is_psycopg3)


class EndedListener(threading.Thread):
    """Listens for ended executions on its own connection and reports task ids.

    Survives a lost connection: it logs, waits (backing off up to 30 s) and
    listens again. A notification missed meanwhile only costs a delay: the
    runners still attempt every task at its next attempt time.
    """

    def __init__(
        self,
        *,
        using: str,
        on_task_ids: Callable[[set[int]], None],
        stopping: threading.Event,
        on_task_names: Callable[[set[str]], None] | None = None,
    ) -> None:
        super().__init__(name="planton-listener", daemon=True)
        self.using = using
        self.on_task_ids = on_task_ids
        self.on_task_names = on_task_names
        self.stopping = stopping
        self.listening = threading.Event()
        self._failures = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._listen()
            except Exception as error:
                self._failures += 1
                self.listening.clear()
                # The traceback once per outage; each later failure is one line.
                logger.error(
                    "Listening for ended executions failed (%d in a row): %s",
                    self._failures,
                    error,
                    exc_info=error if self._failures == 1 else None,
                )
                self.stopping.wait(min(30.0, 0.5 * 2**self._failures))

    def _listen(self) -> None:
        import psycopg

        params = connections[self.using].get_connection_params()
        with psycopg.connect(**params, autocommit=True) as connection:
            connection.execute(f"LISTEN {ENDED_CHANNEL}")
            if self.on_task_names is not None:
                connection.execute(f"LISTEN {WAKE_CHANNEL}")
            self._failures = 0  # each outage backs off from the start again
            self.listening.set()
            while not self.stopping.is_set():
                for notification in connection.notifies(timeout=0.5):
                    self._deliver(notification.channel, notification.payload)

    def _deliver(self, channel: str, payload: str) -> None:
        if channel == WAKE_CHANNEL:
            if payload and self.on_task_names is not None:
                self.on_task_names({payload})
            return
        task_ids = {int(part) for part in payload.split(",") if part.isdigit()}
        if task_ids:
            self.on_task_ids(task_ids)
