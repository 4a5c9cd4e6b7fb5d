"""This process's row in ``planton_runner``, kept fresh by a heartbeat thread.

A runner inserts its row when it starts, updates ``last_seen_at`` and
``dead_after`` every ``PLANTON_HEARTBEAT_INTERVAL`` seconds and deletes the
row when it stops cleanly. A process killed (``kill -9``, a lost host) leaves
its row behind: once ``dead_after`` has passed, the other runners'
housekeeping (:mod:`.housekeeping`) ends the executions it was running in its
own process and, later, prunes the row. Every time comes from the
database's clock, so that hosts with skewed clocks agree on who is dead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from django.db import DatabaseError, connections
from django.db.models import DateTimeField, ExpressionWrapper

from ..core import Task, error_log
from ..executors import Inline, Threads, executor_for
from ..models import RunnerProcess
from ..sql import DatabaseNow, later, read_database_now, uses_process_clock
from .connections import ensure_usable

__all__ = ["Heartbeat", "describe_tasks", "package_version"]

logger = logging.getLogger("django_planton")

#: A runner not seen for this many heartbeat intervals is dead.
MISSED_BEATS = 3


def package_version() -> str:
    """django-planton's installed version; empty when it runs from a bare source tree."""
    try:
        return version("django-planton")
    except PackageNotFoundError:
        return ""


def describe_tasks(tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """The tasks of a runner as its row records them, each with its executor.

    ``in_process`` tells the housekeeping of other runners whether the
    receivers run in this process (``Inline``, ``Threads``): only then does
    this process's death end them.
    """
    described = []
    for task in tasks:
        executor = executor_for(task)
        described.append(
            {
                "name": task.name,
                "executor": repr(executor),
                "in_process": isinstance(executor, Inline | Threads),
            }
        )
    return described


def seen_now(interval: float, using: str) -> dict[str, Any]:
    """``last_seen_at`` and ``dead_after`` by the database's clock, in one statement.

    Expressions of the database's "now", which holds still within a
    statement; on SQLite (this process's clock) one time taken here.
    """
    if uses_process_clock(connections[using]):
        now = read_database_now(using)
        return {"last_seen_at": now, "dead_after": later(now, MISSED_BEATS * interval)}
    dead_after = ExpressionWrapper(
        DatabaseNow() + timedelta(seconds=MISSED_BEATS * interval),
        output_field=DateTimeField(),
    )
    return {"last_seen_at": DatabaseNow(), "dead_after": dead_after}


class Heartbeat:
    """Inserts this runner's row on :meth:`start`, beats in a thread, deletes it on :meth:`stop`.

    The thread (``planton-heartbeat``) has its own connection, closed when it
    ends. A failed beat is reported (:data:`~django_planton.core.error_log`)
    and tried again at the next interval; the runner goes on meanwhile. A row
    that vanished (pruned while this process was frozen) is inserted again.

    :meth:`steady_for` tells housekeeping whether this runner may judge
    others dead: after an outage every row looks dead, and the first runner
    back must give the others time to beat again before ending their work.
    """

    def __init__(
        self, *, using: str, hostname: str, tasks: Sequence[Task], interval: float
    ) -> None:
        self.using = using
        self.hostname = hostname
        self.tasks = list(tasks)
        self.interval = interval
        #: The primary key of this runner's row, once inserted.
        self.row_id: int | None = None
        self.thread: threading.Thread | None = None
        self._started_at: datetime | None = None
        self._stop = threading.Event()
        self._remove = True
        # Monotonic times of the last beat that reached the database, and of
        # the first of the unbroken run of beats it ends.
        self._last_beat: float | None = None
        self._steady_since: float | None = None

    @property
    def identity(self) -> str:
        """``host:pid``, as the row and this runner's executions name it."""
        return RunnerProcess.identity_of(self.hostname, os.getpid())

    def steady_for(self) -> float:
        """Seconds this runner has beaten without a miss; 0 when its last beat failed or is late.

        A beat more than two intervals after the one before counts as a miss:
        the process was frozen, or the database away, as long.
        """
        last, since = self._last_beat, self._steady_since
        if last is None or since is None:
            return 0.0
        now = time.monotonic()
        return 0.0 if now - last > 2 * self.interval else now - since

    def _beaten(self) -> None:
        now = time.monotonic()
        last = self._last_beat
        if self._steady_since is None or last is None or now - last > 2 * self.interval:
            self._steady_since = now
        self._last_beat = now

    def start(self) -> None:
        """Insert the row (in the calling thread, with its connection), then beat in a thread."""
        self._stop.clear()
        self._started_at = None
        self._steady_since = None
        self._insert()
        self._beaten()
        self.thread = threading.Thread(target=self._loop, name="planton-heartbeat", daemon=True)
        self.thread.start()

    def stop(self, *, remove: bool = True, timeout: float | None = None) -> None:
        """Stop beating; delete the row unless ``remove`` is False.

        A runner whose receivers did not finish in time keeps its row: it
        turns dead, and other runners end those executions.
        """
        self._remove = remove
        self._stop.set()
        if self.thread is not None:
            self.thread.join(timeout=timeout)

    def beat(self) -> None:
        """Record that this runner is alive; insert its row again if it vanished."""
        ensure_usable(self.using)
        try:
            row_id, rows = self.row_id, RunnerProcess.objects.using(self.using)
            seen = seen_now(self.interval, self.using)
            if row_id is None or not rows.filter(pk=row_id).update(**seen):
                self._insert()
        except DatabaseError as error:
            self._steady_since = None
            error_log.report(f"Heartbeat of runner {self.identity} failed", error)
        else:
            self._beaten()

    def _insert(self) -> None:
        seen = seen_now(self.interval, self.using)
        row = RunnerProcess.objects.using(self.using).create(
            hostname=self.hostname,
            pid=os.getpid(),
            started_at=self._started_at or seen["last_seen_at"],
            heartbeat_interval=self.interval,
            tasks=describe_tasks(self.tasks),
            version=package_version(),
            **seen,
        )
        self.row_id = row.pk
        if self._started_at is None:
            row.refresh_from_db(fields=["started_at"])
            self._started_at = row.started_at
        logger.debug("Runner %s recorded (row %s)", self.identity, row.pk)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.beat()
            if self._remove:
                self._delete()
        finally:
            connections[self.using].close()

    def _delete(self) -> None:
        if self.row_id is None:
            return
        ensure_usable(self.using)
        try:
            RunnerProcess.objects.using(self.using).filter(pk=self.row_id).delete()
        except DatabaseError as error:
            error_log.report(f"Runner {self.identity} could not delete its row", error)
        else:
            self.row_id = None
