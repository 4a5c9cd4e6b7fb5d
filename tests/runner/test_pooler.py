"""Behind PgBouncer in transaction mode, LISTEN is lost: the listener proves it hears, or says so.

A real PgBouncer (Debian's package) in front of the test server; PostgreSQL only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import override_settings

from django_planton import signals
from django_planton.models import MaintenanceTaskExecution
from django_planton.notify import EndedListener
from django_planton.sql import ENDED_CHANNEL
from scripts import pgbouncer

from ..support import wait_until

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="LISTEN/NOTIFY: PostgreSQL only"),
    pytest.mark.skipif(pgbouncer.binary() is None, reason="pgbouncer is not installed"),
    pytest.mark.django_db(transaction=True),
]

POOLED = "via_pgbouncer"
DEAF_WARNING = "Wake-ups from other processes do not reach this runner"


@pytest.fixture
def pooled_alias(monkeypatch: pytest.MonkeyPatch) -> Iterator[pgbouncer.PgBouncer]:
    """A database alias that reaches the test database through PgBouncer (transaction mode).

    Django's test case refuses connections to aliases it was not told of;
    this one is made after it started, so its connections are let through.
    """
    guarded = BaseDatabaseWrapper.ensure_connection

    def ensure_connection(self: BaseDatabaseWrapper) -> None:
        if self.alias == POOLED and self.connection is None:
            with self.wrap_database_errors:
                self.connect()
            return
        guarded(self)

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", ensure_connection)
    default = connections.settings["default"]
    bouncer = pgbouncer.PgBouncer(int(default["PORT"])).start()
    connections.settings[POOLED] = {
        **default,
        "HOST": "127.0.0.1",
        "PORT": str(bouncer.port),
        "OPTIONS": dict(default.get("OPTIONS", {})),
        "TEST": dict(default.get("TEST", {})),
    }
    try:
        yield bouncer
    finally:
        connections[POOLED].close()
        del connections[POOLED]
        del connections.settings[POOLED]
        bouncer.stop()


def notify_ended(task_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [ENDED_CHANNEL, str(task_id)])


def listen(using: str, heard: list[set[int]]) -> tuple[EndedListener, threading.Event]:
    stopping = threading.Event()
    listener = EndedListener(using=using, on_task_ids=heard.append, stopping=stopping)
    listener.probe_wait = 1.0
    listener.start()
    return listener, stopping


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_listener_behind_pgbouncer_warns_once_that_it_does_not_hear(pooled_alias, caplog):
    heard: list[set[int]] = []
    listener, stopping = listen(POOLED, heard)
    try:
        assert listener.listening.wait(10), pooled_alias.log
        assert wait_until(lambda: any(DEAF_WARNING in m for m in warnings(caplog)), timeout=10)
        notify_ended(4242)
        time.sleep(1.0)
        assert not listener.hears.is_set()
        assert heard == []  # what the warning says: nothing arrives
    finally:
        stopping.set()
        listener.join(5)
    deaf = [m for m in warnings(caplog) if DEAF_WARNING in m]
    assert len(deaf) == 1
    assert "PgBouncer" in deaf[0]
    assert "PLANTON_LISTEN_DATABASE" in deaf[0]


def test_a_direct_listener_hears_its_probe_and_warns_nothing(caplog):
    heard: list[set[int]] = []
    listener, stopping = listen("default", heard)
    try:
        assert listener.hears.wait(5)
        notify_ended(4242)
        assert wait_until(lambda: {4242} in heard, timeout=5)
    finally:
        stopping.set()
        listener.join(5)
    assert not any(DEAF_WARNING in m for m in warnings(caplog))


@override_settings(PLANTON_POLL_INTERVAL=10.0)
def test_a_runner_behind_pgbouncer_keeps_its_in_process_wake_ups(
    pooled_alias, make_task, make_runner, record_signal
):
    """A completion in the runner's own process refills the slot at once, poll or not."""
    dispatched = record_signal(signals.task_dispatched)
    items = iter(["a", "b", "c"])
    task = make_task("mail", lambda context: [next(items)], concurrency=1, delay=30.0)
    runner = make_runner([task], using=POOLED, start=True)

    assert wait_until(lambda: len(dispatched) == 1, timeout=10)
    assert runner.listener is not None
    assert not runner.listener.hears.wait(3)  # deaf behind the pooler
    began = time.monotonic()
    MaintenanceTaskExecution.objects.using(POOLED).get(instruction="a").complete()
    assert wait_until(lambda: len(dispatched) == 2, timeout=5)
    assert time.monotonic() - began < 3  # woken, not the 10 s poll


def test_planton_listen_database_listens_past_the_pooler(
    pooled_alias, make_task, make_runner, settings
):
    settings.PLANTON_LISTEN_DATABASE = "default"
    task = make_task("idle")
    runner = make_runner([task], using=POOLED, start=True)
    assert runner.listener is not None
    assert runner.listener.using == "default"
    assert runner.listener.hears.wait(5)
