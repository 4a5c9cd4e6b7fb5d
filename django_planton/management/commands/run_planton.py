"""``python manage.py run_planton``: schedule the registered tasks until stopped."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from ...models import FailingInstruction, MaintenanceTask, MaintenanceTaskExecution
from ...registry import registry
from ...runner import Runner

logger = logging.getLogger("django_planton")

VERBOSITY_LEVELS = {0: logging.ERROR, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} must be a positive number of seconds")
    return number


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: graceful stop. Second: exit at once. Old handlers are restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        if stop.is_set():
            logger.warning("Second %s: exiting now.", signal.Signals(signum).name)
            os._exit(128 + signum)
        logger.info("%s received: finishing cycles in flight.", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Command(BaseCommand):
    help = "Schedule the registered django-planton tasks until SIGINT or SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--task",
            action="append",
            dest="task_names",
            metavar="NAME",
            default=[],
            help="Schedule only this task (repeatable). Default: every registered task.",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="Run one cycle of each selected task that is due, end overdue executions, "
            "and exit (for cron and tests).",
        )
        parser.add_argument(
            "--workers",
            type=positive_int,
            default=None,
            help="Threads that run cycles (each holds one database connection). "
            "Default: PLANTON_MAX_WORKERS (4).",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=positive_float,
            default=30.0,
            help="Seconds to wait for cycles in flight after SIGINT/SIGTERM (default 30).",
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help="The database alias to use (default: 'default').",
        )

    def handle(
        self,
        *,
        task_names: list[str],
        once: bool,
        workers: int | None,
        shutdown_timeout: float,
        database: str,
        verbosity: int,
        **options: Any,
    ) -> None:
        logger.setLevel(VERBOSITY_LEVELS.get(verbosity, logging.INFO))
        if database not in connections:
            raise CommandError(f"Unknown database alias {database!r}.")
        if not len(registry):
            raise CommandError(
                "No tasks are registered. Register them with django_planton.register() or "
                "@django_planton.task in an AppConfig.ready()."
            )
        unknown = [name for name in task_names if name not in registry]
        if unknown:
            raise CommandError(
                f"Unknown task{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"registered: {', '.join(registry.names())}."
            )
        runner = Runner(registry.select(task_names), using=database, max_workers=workers)
        # Before the first connection: an unanswering database fails within the timeout.
        with runner.connection_limits.applied():
            self._run(runner, once=once, shutdown_timeout=shutdown_timeout)

    def _run(self, runner: Runner, *, once: bool, shutdown_timeout: float) -> None:
        self._check_database(runner.using)
        names = ", ".join(task.name for task in runner.tasks)
        try:
            if once:
                reports = runner.run_once()
                dispatched = sum(len(report.instructions) for report in reports)
                failed = sum(bool(report.errors) for report in reports)
                self.stdout.write(
                    f"Ran one cycle of {len(reports)} task(s) ({names}): "
                    f"{dispatched} instruction(s) dispatched, {failed} with errors."
                )
                for task, report in zip(runner.tasks, reports, strict=True):
                    if report.waiting is not None:
                        self.stdout.write(f"  {task.name}: not attempted, {report.waiting}.")
                return
            self._run_until_stopped(runner, names, shutdown_timeout)
        except DatabaseError as error:
            raise CommandError(f"Database error: {error}".strip()) from error

    def _check_database(self, alias: str) -> None:
        try:
            tables = set(connections[alias].introspection.table_names())
        except DatabaseError as error:
            raise CommandError(f"Cannot reach database {alias!r}: {error}".strip()) from error
        needed = {
            model._meta.db_table
            for model in (MaintenanceTask, MaintenanceTaskExecution, FailingInstruction)
        }
        if not needed <= tables:
            raise CommandError(
                "django-planton's tables do not exist: run `python manage.py migrate` first."
            )

    def _run_until_stopped(self, runner: Runner, names: str, shutdown_timeout: float) -> None:
        stop = threading.Event()
        with stop_on_signals(stop):
            runner.start()
            self.stdout.write(
                f"Scheduling {len(runner.tasks)} task(s): {names}. Stop with Ctrl-C or SIGTERM."
            )
            self.stdout.flush()  # a supervisor reading a pipe sees it now, not at exit
            while not stop.wait(1.0):
                pass
            finished = runner.stop(timeout=shutdown_timeout)
        if not finished:
            stuck = "; ".join(
                f"{', '.join(cycle.names)} (running {cycle.seconds():.0f}s)"
                for cycle in runner.cycles_in_flight()
            )
            self.stderr.write(
                f"Cycles still running after {shutdown_timeout:g}s: {stuck or 'none named'}. "
                "Exiting without them (their transactions roll back), with status 1."
            )
            self.stdout.flush()
            self.stderr.flush()
            os._exit(1)
        self.stdout.write("Stopped.")
