"""System checks: the settings, SQLite's locking, tasks that no receiver listens to."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.checks import Error, Warning, run_checks
from django.test import override_settings

from django_planton import checks, signals
from django_planton.registry import registry


def planton_ids(messages) -> list[str]:
    return sorted(message.id for message in messages if message.id.startswith("django_planton."))


def test_the_example_settings_pass():
    assert planton_ids(run_checks()) == []


@pytest.mark.parametrize(
    "name",
    [
        "PLANTON_MAX_WORKERS",
        "PLANTON_BATCH_SIZE",
        "PLANTON_POLL_INTERVAL",
        "PLANTON_MAX_WAIT",
        "PLANTON_HOUSEKEEPING_INTERVAL",
        "PLANTON_MAX_INSTRUCTION_LENGTH",
        "PLANTON_BATCH_TIME_BUDGET",
    ],
)
@pytest.mark.parametrize("value", [0, -1, "5", None, True])
def test_a_non_positive_number_is_e001(name, value):
    with override_settings(**{name: value}):
        messages = [m for m in run_checks() if m.id == "django_planton.E001"]
    assert len(messages) == 1
    [message] = messages
    assert isinstance(message, Error)
    assert name in message.msg
    assert repr(value) in message.msg


@pytest.mark.parametrize("name", ["PLANTON_POLL_INTERVAL", "PLANTON_MAX_WAIT"])
def test_fractions_of_seconds_are_fine(name):
    with override_settings(**{name: 0.25}):
        assert planton_ids(run_checks()) == []


@pytest.mark.parametrize(
    "name", ["PLANTON_MAX_WORKERS", "PLANTON_BATCH_SIZE", "PLANTON_MAX_INSTRUCTION_LENGTH"]
)
def test_a_fraction_where_a_whole_number_is_needed_is_e002(name):
    with override_settings(**{name: 2.5}):
        assert planton_ids(run_checks()) == ["django_planton.E002"]


@pytest.mark.parametrize("value", [5, "7 days", timedelta(0), timedelta(seconds=-1)])
def test_a_bad_keep_completed_executions_is_e003(value):
    with override_settings(PLANTON_KEEP_COMPLETED_EXECUTIONS=value):
        messages = run_checks()
    assert planton_ids(messages) == ["django_planton.E003"]


@pytest.mark.parametrize("value", [None, timedelta(hours=1)])
def test_keep_completed_executions_may_be_none_or_positive(value):
    with override_settings(PLANTON_KEEP_COMPLETED_EXECUTIONS=value):
        assert planton_ids(run_checks()) == []


SQLITE = "django.db.backends.sqlite3"


@pytest.fixture
def databases(monkeypatch):
    """Replace the DATABASES that the SQLite check reads.

    ``override_settings(DATABASES=...)`` warns (and warnings are errors here),
    and the connections would not follow it anyway.
    """

    def use(value: dict) -> None:
        monkeypatch.setattr(checks, "settings", SimpleNamespace(DATABASES=value))

    return use


@pytest.mark.parametrize(
    "options",
    [{}, {"timeout": 20}, {"transaction_mode": "DEFERRED"}, {"transaction_mode": "EXCLUSIVE"}],
)
def test_sqlite_without_immediate_transactions_is_w001(databases, options):
    databases({"default": {"ENGINE": SQLITE, "NAME": "db.sqlite3", "OPTIONS": options}})
    [message] = checks.check_sqlite_locking()
    assert isinstance(message, Warning)
    assert message.id == "django_planton.W001"
    assert "'default'" in message.msg
    assert "IMMEDIATE" in message.hint


def test_sqlite_without_options_is_w001(databases):
    databases({"other": {"ENGINE": SQLITE, "NAME": "db.sqlite3"}})
    [message] = checks.check_sqlite_locking()
    assert message.id == "django_planton.W001"
    assert "'other'" in message.msg


def test_sqlite_with_immediate_transactions_and_other_databases_pass(databases):
    databases(
        {
            "default": {
                "ENGINE": SQLITE,
                "NAME": "db.sqlite3",
                "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
            },
            "pg": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"},
        }
    )
    assert checks.check_sqlite_locking() == []


def test_the_sqlite_check_is_registered(databases):
    databases({"default": {"ENGINE": SQLITE, "NAME": "db.sqlite3"}})
    assert planton_ids(run_checks(tags=["database"])) == ["django_planton.W001"]


@pytest.mark.parametrize(
    "name", ["PLANTON_SLOW_CYCLE_WARNING", "PLANTON_CONNECT_TIMEOUT", "PLANTON_STATEMENT_TIMEOUT"]
)
@pytest.mark.parametrize("value", [0, -1, "5", True])
def test_a_bad_timeout_is_e001_and_none_turns_it_off(name, value):
    with override_settings(**{name: value}):
        [message] = [m for m in run_checks() if m.id == "django_planton.E001"]
    assert name in message.msg
    assert "a positive number or None" in message.msg
    with override_settings(**{name: None}):
        assert planton_ids(run_checks()) == []


@pytest.mark.parametrize("value", [-1, "15", None])
def test_a_bad_ending_retry_is_e001_and_0_turns_it_off(value):
    with override_settings(PLANTON_ENDING_RETRY_SECONDS=value):
        [message] = [m for m in run_checks() if m.id == "django_planton.E001"]
    assert "PLANTON_ENDING_RETRY_SECONDS" in message.msg
    with override_settings(PLANTON_ENDING_RETRY_SECONDS=0):
        assert planton_ids(run_checks()) == []


def test_a_listen_database_that_is_not_an_alias_is_e004():
    with override_settings(PLANTON_LISTEN_DATABASE="direct"):
        assert planton_ids(run_checks()) == ["django_planton.E004"]
    with override_settings(PLANTON_LISTEN_DATABASE="default"):
        assert planton_ids(run_checks()) == []


def w002(messages) -> list[Warning]:
    return [message for message in messages if message.id == "django_planton.W002"]


def test_a_task_without_receivers_is_w002_with_a_hint(make_task, no_default_receiver):
    make_task("lonely")
    make_task("heard")

    def receiver(sender, **kwargs):
        pass

    signals.task_dispatched.connect(receiver, sender=registry.get("heard"), weak=False)
    try:
        [message] = w002(run_checks())
    finally:
        signals.task_dispatched.disconnect(receiver, sender=registry.get("heard"))
    assert isinstance(message, Warning)
    assert message.msg == (
        "No task_dispatched (nor batch_dispatched) receiver listens to task 'lonely': its "
        "executions run until something ends them, or until their maximum duration."
    )
    assert "task_dispatched.connect(receiver, sender=<the task 'lonely'>)" in message.hint
    assert message.obj == "lonely"


def test_a_receiver_of_every_sender_counts_for_w002(make_task, no_default_receiver):
    make_task("lonely")
    assert len(w002(checks.check_receivers())) == 1

    def anyone(sender, **kwargs):
        pass

    signals.task_dispatched.connect(anyone, weak=False)
    try:
        assert w002(checks.check_receivers()) == []
    finally:
        signals.task_dispatched.disconnect(anyone)


def test_a_batch_dispatched_receiver_counts_for_w002(make_task, no_default_receiver):
    task = make_task("batched")
    assert len(w002(checks.check_receivers())) == 1

    def take_batch(sender, **kwargs):
        pass

    signals.batch_dispatched.connect(take_batch, sender=task, weak=False)
    try:
        assert w002(checks.check_receivers()) == []
    finally:
        signals.batch_dispatched.disconnect(take_batch, sender=task)


def test_the_example_sites_tasks_all_have_receivers(no_default_receiver):
    assert sorted(task.name for task in registry) == [
        "clear_expired_sessions",
        "purge_deleted_accounts",
        "send_user_email",
    ]
    assert w002(run_checks()) == []
