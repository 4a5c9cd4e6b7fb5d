"""The runner's connections: a connect timeout and a statement timeout, on the real servers."""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError, connection
from django.test import override_settings

from django_planton.runner.timeouts import ConnectionLimits, statement_timeout_sql

pytestmark = pytest.mark.django_db(transaction=True)

servers_only = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite has no server to time out on"
)


def sleep_sql(seconds: float) -> str:
    if connection.vendor == "postgresql":
        return f"SELECT pg_sleep({seconds})"
    return f"SELECT SLEEP({seconds})"


def sleeping_schedule(seconds: float):
    def schedule(context):
        with connection.cursor() as cursor:
            cursor.execute(sleep_sql(seconds))
            row = cursor.fetchone()
        # MariaDB's SLEEP() interrupted by max_statement_time returns 1 or raises.
        if row and row[0] == 1:
            raise OperationalError("SLEEP() was interrupted")
        return []

    return schedule


@servers_only
@override_settings(PLANTON_STATEMENT_TIMEOUT=0.3)
def test_a_schedule_stuck_in_a_statement_is_cut_at_the_statement_timeout(make_task, make_runner):
    task = make_task("stuck", sleeping_schedule(5))
    runner = make_runner([task])

    began = time.monotonic()
    [report] = runner.run_once()
    took = time.monotonic() - began

    assert took < 3, f"the attempt took {took:.1f}s"
    assert len(report.errors) == 1
    assert isinstance(report.errors[0], OperationalError)


@servers_only
@override_settings(PLANTON_STATEMENT_TIMEOUT=None)
def test_no_statement_timeout_when_turned_off(make_task, make_runner):
    task = make_task("patient", sleeping_schedule(0.5))
    [report] = make_runner([task]).run_once()
    assert report.errors == ()


@servers_only
def test_the_statement_timeout_is_set_on_each_new_connection():
    limits = ConnectionLimits("default", connect_timeout=None, statement_timeout=2.5)
    limits.install()
    try:
        connection.close()
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SHOW statement_timeout")
                assert cursor.fetchone()[0] == "2500ms"
            else:
                cursor.execute("SELECT @@SESSION.max_statement_time")
                assert float(cursor.fetchone()[0]) == 2.5
    finally:
        limits.uninstall()
        connection.close()
    with connection.cursor() as cursor:  # uninstalled: a new connection has the default
        if connection.vendor == "postgresql":
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone()[0] == "0"


def test_the_connect_timeout_goes_into_options_unless_the_project_set_one():
    options = connection.settings_dict.setdefault("OPTIONS", {})
    limits = ConnectionLimits("default", connect_timeout=7, statement_timeout=None)
    limits.install()
    try:
        expected = 7 if connection.vendor != "sqlite" else None
        assert options.get("connect_timeout") == expected
    finally:
        limits.uninstall()
    assert "connect_timeout" not in options

    options["connect_timeout"] = 3
    try:
        limits.install()
        assert options["connect_timeout"] == 3
        limits.uninstall()
        assert options["connect_timeout"] == 3  # the project's, left alone
    finally:
        options.pop("connect_timeout")


@servers_only
def test_a_database_that_never_answers_fails_to_connect_within_the_connect_timeout(
    relayed_database,
):
    limits = ConnectionLimits("default", connect_timeout=1, statement_timeout=None)
    limits.install()
    try:
        relayed_database.set_mode("blackhole")
        connection.close()
        began = time.monotonic()
        with pytest.raises(OperationalError):
            connection.ensure_connection()
        assert time.monotonic() - began < 5
    finally:
        limits.uninstall()
        relayed_database.set_mode("forward")


def test_sqlite_has_no_statement_timeout_statement():
    if connection.vendor != "sqlite":
        pytest.skip("about SQLite")
    assert statement_timeout_sql(connection, 1.0) == ("", [])
