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
from ..once import run_once

logger = logging.getLogger("django_planton")

VERBOSITY_LEVELS = {0: logging.ERROR, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}

#: The format of the handler ``run_planton`` adds when the project configured none.
LOG_FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(message)s"


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
def package_logging(verbosity: int) -> Iterator[None]:
    """The package logger's level from ``--verbosity``, and a handler when the project has none.

    A fresh project configures no handler for ``django_planton`` nor for the
    root logger: Python would print warnings and errors only, without a
    time. For the command's duration a handler on stderr prints what the
    verbosity asks for; the project's own ``LOGGING`` wins when it has one.
    """
    previous = logger.level
    logger.setLevel(VERBOSITY_LEVELS.get(verbosity, logging.INFO))
    handler = None
    if not logger.hasHandlers():
        handler = logging.StreamHandler()  # sys.stderr
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
    try:
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
        logger.setLevel(previous)


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
        name = signal.Signals(signum).name
        logger.info("%s received: stopping; a second one exits at once.", name)
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
            "wait for the receivers, print what became of the executions, and exit: "
            "status 1 when a schedule or an execution failed (for cron and tests).",
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
        with package_logging(verbosity), runner.connection_limits.applied():
            self._run(runner, once=once, shutdown_timeout=shutdown_timeout, verbosity=verbosity)

    def _run(self, runner: Runner, *, once: bool, shutdown_timeout: float, verbosity: int) -> None:
        self._check_database(runner.using)
        names = ", ".join(task.name for task in runner.tasks)
        try:
            if once:
                self._run_once(runner, verbosity)
                return
            self._run_until_stopped(runner, names, shutdown_timeout)
        except DatabaseError as error:
            raise CommandError(f"Database error: {error}".strip()) from error

    def _run_once(self, runner: Runner, verbosity: int) -> None:
        """One cycle each; the summary unless ``-v 0``; status 1 when something failed."""
        summary = run_once(runner)
        if verbosity >= 1:
            for line in summary.lines():
                self.stdout.write(line)
        if summary.failures:
            raise CommandError(summary.failures, returncode=1)

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
            say_what_stopping_waits_for(runner, shutdown_timeout)
            finished = runner.stop(timeout=shutdown_timeout)
        if not finished:
            stuck = "; ".join(
                f"{', '.join(cycle.names)} (running {cycle.seconds():.0f}s)"
                for cycle in runner.cycles_in_flight()
            )
            receivers = sum(executor.receivers_running() for executor in runner.executors())
            at_work = f", and {receivers} receiver(s) at work" if receivers else ""
            self.stderr.write(
                f"Cycles still running after {shutdown_timeout:g}s: {stuck or 'none'}{at_work}. "
                "Exiting without them (their transactions roll back), with status 1."
            )
            self.stdout.flush()
            self.stderr.flush()
            os._exit(1)
        self.stdout.write("Stopped.")


def say_what_stopping_waits_for(runner: Runner, timeout: float) -> None:
    """Log the cycles and receivers that the shutdown waits for, so a slow one is no mystery."""
    waiting = []
    cycles = runner.cycles_in_flight()
    if cycles:
        names = ", ".join(name for cycle in cycles for name in cycle.names)
        waiting.append(f"{len(cycles)} cycle(s) in flight ({names})")
    receivers = sum(executor.receivers_running() for executor in runner.executors())
    if receivers:
        waiting.append(f"{receivers} receiver(s) at work")
    if waiting:
        logger.info("Waiting up to %g s for %s.", timeout, " and ".join(waiting))
