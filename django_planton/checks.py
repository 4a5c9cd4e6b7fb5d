"""System checks for misconfiguration that can be found at start-up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from .conf import DEFAULTS, raw_setting


def _positive_number(name: str, *, none_allowed: bool = False) -> list[CheckMessage]:
    value = raw_setting(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        what = "a positive number or None" if none_allowed else "a positive number"
        return [
            Error(
                f"{name} must be {what}, not {value!r}.",
                hint=f"Remove it to use the default ({DEFAULTS[name]!r}).",
                id="django_planton.E001",
            )
        ]
    return []


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for name in (
        "PLANTON_MAX_WORKERS",
        "PLANTON_BATCH_SIZE",
        "PLANTON_POLL_INTERVAL",
        "PLANTON_MAX_WAIT",
        "PLANTON_HOUSEKEEPING_INTERVAL",
        "PLANTON_HEARTBEAT_INTERVAL",
        "PLANTON_MAX_INSTRUCTION_LENGTH",
        "PLANTON_BATCH_TIME_BUDGET",
    ):
        messages += _positive_number(name)
    for name in (
        "PLANTON_SLOW_CYCLE_WARNING",
        "PLANTON_CONNECT_TIMEOUT",
        "PLANTON_STATEMENT_TIMEOUT",
    ):
        if raw_setting(name) is not None:
            messages += _positive_number(name, none_allowed=True)
    retry = raw_setting("PLANTON_ENDING_RETRY_SECONDS")
    if isinstance(retry, bool) or not isinstance(retry, int | float) or not retry >= 0:
        messages.append(
            Error(
                f"PLANTON_ENDING_RETRY_SECONDS must be a number of seconds, 0 or more, "
                f"not {retry!r}.",
                hint="0 turns the retries off; remove it to use the default (15.0).",
                id="django_planton.E001",
            )
        )
    for name in ("PLANTON_MAX_WORKERS", "PLANTON_BATCH_SIZE", "PLANTON_MAX_INSTRUCTION_LENGTH"):
        if not isinstance(raw_setting(name), int):
            messages.append(
                Error(
                    f"{name} must be a whole number, not {raw_setting(name)!r}.",
                    hint=f"Remove it to use the default ({DEFAULTS[name]!r}).",
                    id="django_planton.E002",
                )
            )
    listen = raw_setting("PLANTON_LISTEN_DATABASE")
    if listen is not None and listen not in settings.DATABASES:
        messages.append(
            Error(
                f"PLANTON_LISTEN_DATABASE names {listen!r}, which is not in DATABASES.",
                hint="Name a database alias that reaches PostgreSQL directly, or remove it.",
                id="django_planton.E004",
            )
        )
    keep = raw_setting("PLANTON_KEEP_COMPLETED_EXECUTIONS")
    if keep is not None and (not isinstance(keep, timedelta) or keep <= timedelta(0)):
        messages.append(
            Error(
                f"PLANTON_KEEP_COMPLETED_EXECUTIONS must be a positive timedelta or None, "
                f"not {keep!r}.",
                hint="For example timedelta(days=7); None keeps executions forever.",
                id="django_planton.E003",
            )
        )
    return messages


@register("database")
def check_sqlite_locking(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """SQLite has no row locks: transactions should take the write lock when they begin.

    The runner's own cycles take it first in any case; this is about the
    user's schedule and receivers, whose deferred transactions fail with
    "database is locked" when two processes upgrade a read lock at once.
    """
    messages: list[CheckMessage] = []
    for alias, database in settings.DATABASES.items():
        if database.get("ENGINE") != "django.db.backends.sqlite3":
            continue
        if database.get("OPTIONS", {}).get("transaction_mode") != "IMMEDIATE":
            messages.append(
                Warning(
                    f"Database {alias!r} is SQLite without transaction_mode 'IMMEDIATE'.",
                    hint=(
                        f"Set DATABASES[{alias!r}]['OPTIONS'] = {{'transaction_mode': "
                        "'IMMEDIATE', 'timeout': 20} so that transactions of several "
                        "run_planton processes (and your receivers) wait for the write lock "
                        "instead of failing with 'database is locked'."
                    ),
                    id="django_planton.W001",
                )
            )
    return messages


@register()
def check_receivers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A registered task that no ``task_dispatched`` receiver listens to.

    Its executions would never end: the runner fails each one at once
    instead. Run after the apps are ready, so the receivers that
    ``AppConfig.ready()`` connects are counted, those of every sender too.
    """
    from .registry import registry
    from .signals import receives_dispatches

    return [
        Warning(
            f"No task_dispatched (nor batch_dispatched) receiver listens to task "
            f"{task.name!r}: its executions run until something ends them, or until their "
            "maximum duration.",
            hint=(
                "Connect one in your AppConfig.ready(): "
                f"task_dispatched.connect(receiver, sender=<the task {task.name!r}>), "
                "where receiver(sender, instruction, execution, **kwargs) does the work "
                "and ends the execution."
            ),
            obj=task.name,
            id="django_planton.W002",
        )
        for task in registry
        if not receives_dispatches(task)
    ]
