"""The migrations: complete, reversible, and producing the schema the models describe."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from django_planton.models import MaintenanceTaskExecution


def relpersistence(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relpersistence FROM pg_class WHERE relname = %s", [table])
        return cursor.fetchone()[0]


def trigger_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'maintenance_task_execution'::regclass"
            " AND NOT tgisinternal"
        )
        return {name for (name,) in cursor.fetchall()}


def constraint_names(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, table))


@pytest.mark.django_db
def test_no_migrations_are_missing():
    out = StringIO()
    call_command("makemigrations", "django_planton", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_the_constraints_and_indexes_exist():
    names = constraint_names("maintenance_task_execution")
    expected = {
        "maintenance_task_id_idx",
        "mte_ended_at_task_id_idx",
        "maintenance_task_execution_check",
        "maintenance_task_execution_check1",
        "maintenance_task_execution_state_check",
    }
    if connection.features.supports_partial_indexes:
        expected.add("mte_running_task_id_idx")
    assert expected <= names
    for constraint in MaintenanceTaskExecution._meta.constraints:
        assert constraint.name in names


@pytest.mark.django_db(transaction=True)
def test_the_migrations_reverse_and_apply_again():
    out = StringIO()
    call_command("migrate", "django_planton", "zero", stdout=out, verbosity=0)
    try:
        tables = set(connection.introspection.table_names())
        assert "maintenance_task" not in tables
        assert "maintenance_task_execution" not in tables
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_proc WHERE proname = 'planton_notify_executions_ended'"
                )
                assert cursor.fetchone()[0] == 0
    finally:
        call_command("migrate", "django_planton", stdout=out, verbosity=0)
    tables = set(connection.introspection.table_names())
    assert {"maintenance_task", "maintenance_task_execution"} <= tables
    if connection.vendor == "postgresql":
        assert relpersistence("maintenance_task_execution") == "u"
        assert relpersistence("maintenance_task") == "p"
        assert trigger_names() == {"maintenance_task_execution_ended"}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="UNLOGGED tables are PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_unlogged_executions_can_be_turned_off_before_migrating():
    out = StringIO()
    call_command("migrate", "django_planton", "zero", stdout=out, verbosity=0)
    try:
        with override_settings(PLANTON_UNLOGGED_EXECUTIONS=False):
            call_command("migrate", "django_planton", stdout=out, verbosity=0)
        assert relpersistence("maintenance_task_execution") == "p"
        call_command("migrate", "django_planton", "zero", stdout=out, verbosity=0)
    finally:
        call_command("migrate", "django_planton", stdout=out, verbosity=0)
    assert relpersistence("maintenance_task_execution") == "u"
