"""A thread that samples ``send_user_email``'s running executions every 20 ms.

It uses a connection of its own and reads the running count and the
effective limit in one query, so that a sample never compares a count with a
limit from another moment. Every 250 ms it also reads how far each task's
``next_attempt_at`` is ahead of the database's now. It keeps sampling
through database restarts (failed samples are only counted).
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime
from typing import Any

import psycopg

from stress.config import AHEAD_EVERY, EMAIL_TASK, SAMPLE_EVERY
from stress.records import Ahead, Sample, now


class Sampler(threading.Thread):
    """Counts send_user_email's running executions every 20 ms, from a connection of its own."""

    SQL = (
        "SELECT t.concurrency, t.maximum_concurrent_execution_count, "
        "(SELECT count(*) FROM maintenance_task_execution e "
        " WHERE e.maintenance_task_id = t.id AND e.ended_at IS NULL) "
        "FROM maintenance_task t WHERE t.nid = %s"
    )
    AHEAD_SQL = (
        "SELECT statement_timestamp(), nid, "
        "EXTRACT(EPOCH FROM next_attempt_at - statement_timestamp())::float8 "
        "FROM maintenance_task WHERE next_attempt_at IS NOT NULL"
    )

    def __init__(self, url: str) -> None:
        super().__init__(name="sampler", daemon=True)
        self.url = url
        self.samples: list[Sample] = []
        self.ahead: list[Ahead] = []
        self.failures = 0
        self._halt = threading.Event()

    def run(self) -> None:
        connection: psycopg.Connection[tuple[Any, ...]] | None = None
        next_ahead = time.monotonic()
        while not self._halt.is_set():
            try:
                if connection is None:
                    connection = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
                row = connection.execute(self.SQL, (EMAIL_TASK,)).fetchone()
                if row is not None:
                    declared, override, running = row
                    self.samples.append(Sample(now(), running, override or declared))
                if time.monotonic() >= next_ahead:
                    next_ahead = time.monotonic() + AHEAD_EVERY
                    rows = connection.execute(self.AHEAD_SQL).fetchall()
                    self.ahead += [Ahead(at, str(task), float(ahead)) for at, task, ahead in rows]
            except psycopg.Error:
                self.failures += 1
                if connection is not None:
                    with contextlib.suppress(psycopg.Error):
                        connection.close()
                connection = None
                self._halt.wait(0.2)
                continue
            self._halt.wait(SAMPLE_EVERY)
        if connection is not None:
            connection.close()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)

    def window(self, start: datetime, end: datetime) -> tuple[Sample, ...]:
        return tuple(sample for sample in self.samples if start <= sample.at <= end)
