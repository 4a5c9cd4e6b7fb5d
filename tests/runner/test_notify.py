"""``django_planton.notify``: the ``wake_on_change`` operation, who may listen, what is delivered.

Most of it needs no database: the operation's functions get a stand-in
schema editor, and the listener's parsing of notifications is called
directly. What only PostgreSQL does (triggers, LISTEN/NOTIFY) is skipped on
the other vendors.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connection

from django_planton import notify
from django_planton.notify import EndedListener, listening_supported, wake_on_change
from django_planton.sql import ENDED_CHANNEL as CHANNEL
from django_planton.sql import WAKE_CHANNEL, WAKE_FUNCTION_SQL

from ..support import Log

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a trigger and NOTIFY: PostgreSQL only"
)


class Editor:
    """A schema editor stand-in that records what it is asked to execute."""

    def __init__(self, vendor: str) -> None:
        self.connection = SimpleNamespace(vendor=vendor)
        self.executed: list[str] = []

    def quote_name(self, name: str) -> str:
        return f'"{name}"'

    def execute(self, sql: str, params: Any = None) -> None:
        self.executed.append(sql)


def forwards(operation: Any, editor: Editor) -> list[str]:
    operation.code(apps, editor)
    return editor.executed


def backwards(operation: Any, editor: Editor) -> list[str]:
    operation.reverse_code(apps, editor)
    return editor.executed


# -- wake_on_change: its arguments ----------------------------------------------------


@pytest.mark.parametrize(
    "events",
    [[], (), ["TRUNCATE"], ["INSERT", "TRUNCATE"], ["SELECT"], [""], ["INSERT OR UPDATE"]],
    ids=repr,
)
def test_wake_on_change_rejects_bad_or_empty_events(events):
    with pytest.raises(ValueError, match="events must be some of"):
        wake_on_change("auth.Group", "watcher", events=events)


@pytest.mark.parametrize(
    ("events", "kinds"),
    [
        (("INSERT", "UPDATE"), "INSERT OR UPDATE"),
        (["delete"], "DELETE"),
        (["Insert", "update", "DELETE"], "INSERT OR UPDATE OR DELETE"),
    ],
)
def test_wake_on_change_accepts_events_in_any_case(events, kinds):
    operation = wake_on_change("auth.Group", "watcher", events=events)
    create = forwards(operation, Editor("postgresql"))[-1]
    assert f"AFTER {kinds} ON" in create


def test_wake_on_change_is_a_reversible_operation_never_elided():
    from django.db import migrations

    operation = wake_on_change("auth.Group", "watcher")
    assert isinstance(operation, migrations.RunPython)
    assert operation.reversible
    assert operation.elidable is False


# -- wake_on_change: what it runs ------------------------------------------------------


@pytest.mark.parametrize("vendor", ["sqlite", "mysql", "oracle"])
def test_the_operation_does_nothing_off_postgresql(vendor):
    operation = wake_on_change("auth.Group", "watcher", events=["INSERT", "DELETE"])
    assert forwards(operation, Editor(vendor)) == []
    assert backwards(operation, Editor(vendor)) == []


def test_on_postgresql_the_operation_creates_then_drops_a_statement_trigger():
    operation = wake_on_change("auth.Group", "it's a watcher", events=["INSERT"])
    function, create = forwards(operation, Editor("postgresql"))
    assert function == WAKE_FUNCTION_SQL
    assert create.startswith("CREATE TRIGGER planton_wake_")
    assert 'AFTER INSERT ON "auth_group"' in create
    assert "FOR EACH STATEMENT" in create
    assert "planton_wake_task('it''s a watcher')" in create  # quoted as a SQL literal

    trigger = create.split()[2]
    [drop] = backwards(operation, Editor("postgresql"))
    assert drop == f'DROP TRIGGER IF EXISTS {trigger} ON "auth_group"'


def test_each_task_gets_a_trigger_of_its_own():
    def trigger_of(task_name: str) -> str:
        return forwards(wake_on_change("auth.Group", task_name), Editor("postgresql"))[-1].split()[
            2
        ]

    assert trigger_of("first") == trigger_of("first")
    assert trigger_of("first") != trigger_of("second")
    assert len(trigger_of("a" * 200)) <= 63  # PostgreSQL's identifier limit


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_the_trigger_is_created_and_dropped_on_postgresql():
    def triggers() -> set[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'auth_group'::regclass"
                " AND NOT tgisinternal"
            )
            return {name for (name,) in cursor.fetchall()}

    operation = wake_on_change("auth.Group", "watcher")
    before = triggers()
    with connection.schema_editor() as editor:
        operation.code(apps, editor)
    try:
        [added] = triggers() - before
        assert added.startswith("planton_wake_")
    finally:
        with connection.schema_editor() as editor:
            operation.reverse_code(apps, editor)
    assert triggers() == before


# -- listening_supported --------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "supported"),
    [("postgresql", True), ("sqlite", False), ("mysql", False), ("oracle", False)],
)
def test_listening_is_supported_on_postgresql_with_psycopg_3_only(monkeypatch, vendor, supported):
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    monkeypatch.setattr(notify, "connections", {"other": SimpleNamespace(vendor=vendor)})
    assert listening_supported("other") is (supported and is_psycopg3)


def test_listening_supported_for_the_database_under_test():
    expected = connection.vendor == "postgresql"
    assert listening_supported(DEFAULT_DB_ALIAS) is expected


# -- EndedListener: what a notification delivers --------------------------------------------


def listener(*, names: bool = True) -> tuple[EndedListener, Log, Log]:
    ids, task_names = Log(), Log()
    made = EndedListener(
        using=DEFAULT_DB_ALIAS,
        on_task_ids=ids.append,
        stopping=threading.Event(),
        on_task_names=task_names.append if names else None,
    )
    return made, ids, task_names


def test_an_ended_payload_delivers_the_task_ids_it_carries():
    made, ids, names = listener()
    made._deliver(CHANNEL, "1,2,x")
    made._deliver(CHANNEL, "7")
    assert ids.items == [{1, 2}, {7}]
    assert names.items == []


@pytest.mark.parametrize("payload", ["", "x", ",", "x,y", "-1"])
def test_an_ended_payload_without_ids_is_ignored(payload):
    made, ids, names = listener()
    made._deliver(CHANNEL, payload)
    assert ids.items == []
    assert names.items == []


def test_a_wake_payload_delivers_the_task_name():
    made, ids, names = listener()
    made._deliver(WAKE_CHANNEL, "send_user_email")
    made._deliver(WAKE_CHANNEL, "1,2")  # a name, however it looks
    assert names.items == [{"send_user_email"}, {"1,2"}]
    assert ids.items == []


def test_an_empty_wake_payload_is_ignored():
    made, ids, names = listener()
    made._deliver(WAKE_CHANNEL, "")
    assert names.items == []
    assert ids.items == []


def test_a_wake_payload_without_a_receiver_for_names_is_ignored():
    made, ids, names = listener(names=False)
    made._deliver(WAKE_CHANNEL, "watcher")
    assert ids.items == []
    assert names.items == []


def test_a_listener_is_a_daemon_thread_not_started_on_construction():
    made, _ids, _names = listener()
    assert made.daemon
    assert not made.is_alive()
    assert not made.listening.is_set()


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_listener_delivers_what_postgresql_notifies(wait_until):
    made, ids, names = listener()
    try:
        made.start()
        assert made.listening.wait(5)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, "3,4"])
            cursor.execute("SELECT pg_notify(%s, %s)", [WAKE_CHANNEL, "watcher"])
        assert wait_until(lambda: ids.items == [{3, 4}] and names.items == [{"watcher"}])
    finally:
        made.stopping.set()
        made.join(5)
    assert not made.is_alive()
