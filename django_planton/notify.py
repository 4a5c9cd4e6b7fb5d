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
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections

from .sql import (
    ENDED_CHANNEL,
    PROBE_CHANNEL,
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

    It proves that it hears: after each ``LISTEN`` it sends a NOTIFY from a
    second connection, and sets :attr:`hears` when that arrives. Behind a
    pooler in transaction mode (PgBouncer) a ``LISTEN`` is lost with the
    server connection it ran on: the probe never arrives, and the listener
    logs one warning that names the cause and the fix. Until it hears, the
    runner keeps its in-process wake-ups (see ``Runner``).
    """

    #: Seconds the probe NOTIFY has to arrive.
    probe_wait = 5.0

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
        #: Set while LISTEN has been sent on a live connection.
        self.listening = threading.Event()
        #: Set once this connection's probe NOTIFY arrived: wake-ups reach it.
        self.hears = threading.Event()
        self._failures = 0
        self._warned_deaf = False

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._listen()
            except Exception as error:
                self._failures += 1
                self.listening.clear()
                self.hears.clear()
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
            connection.execute(f"LISTEN {PROBE_CHANNEL}")
            if self.on_task_names is not None:
                connection.execute(f"LISTEN {WAKE_CHANNEL}")
            self._failures = 0  # each outage backs off from the start again
            self.listening.set()
            token = uuid.uuid4().hex
            _send_probe(params, token)
            deadline = time.monotonic() + self.probe_wait
            while not self.stopping.is_set():
                for notification in connection.notifies(timeout=0.5):
                    if notification.channel == PROBE_CHANNEL:
                        if notification.payload == token:
                            self.hears.set()
                        continue
                    self._deliver(notification.channel, notification.payload)
                if not self.hears.is_set() and time.monotonic() > deadline:
                    self._deaf()
                    deadline = float("inf")

    def _deaf(self) -> None:
        """The probe did not arrive: say so once, with the likely cause and the fix."""
        if self._warned_deaf:
            return
        self._warned_deaf = True
        logger.warning(
            "Wake-ups from other processes do not reach this runner: a NOTIFY sent after "
            "LISTEN on database %r did not arrive within %gs. The likely cause is a "
            "connection pooler in transaction mode (PgBouncer), which cannot keep a LISTEN. "
            "Set PLANTON_LISTEN_DATABASE to a database alias that connects to PostgreSQL "
            "directly (or use session pooling). Meanwhile this runner is woken by the "
            "executions that end in its own process, and polls every PLANTON_POLL_INTERVAL.",
            self.using,
            self.probe_wait,
        )

    def _deliver(self, channel: str, payload: str) -> None:
        if channel == WAKE_CHANNEL:
            if payload and self.on_task_names is not None:
                self.on_task_names({payload})
            return
        task_ids = {int(part) for part in payload.split(",") if part.isdigit()}
        if task_ids:
            self.on_task_ids(task_ids)


def _send_probe(params: dict[str, Any], token: str) -> None:
    """NOTIFY the probe channel from a second, short-lived connection.

    Not from the listening connection itself: through a pooler, a NOTIFY
    sent there would come back on the same server connection, and prove
    nothing about notifications sent by other processes.
    """
    import psycopg

    with psycopg.connect(**params, autocommit=True) as sender:
        sender.execute("SELECT pg_notify(%s, %s)", [PROBE_CHANNEL, token])
