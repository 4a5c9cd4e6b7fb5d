"""The executors' baseline: a hand-written threaded psycopg loop, slow receivers and all.

The executors section compares each executor with the ideal rate,
concurrency / receiver latency. No Python loop reaches that on a small
machine: the threads, the GIL and the round trips cost something. This loop
is the least a threaded Python program can do for the same work, measured in
the same run, so a row's distance to it is what the executor costs, and its
distance to the ideal what Python and the machine cost.

One claiming thread (this one), with one connection and a transaction per
cycle: it waits until fewer than ``concurrency`` executions are in flight,
reads the task's active instructions, claims and marks up to ``concurrency``
minus them (or minus those in flight, see :func:`claim`) and inserts their
executions in one statement (the psycopg baseline's, :mod:`.baseline`),
commits, and queues the execution ids.
``concurrency`` worker threads, each with its own autocommit connection,
take an id, wait ``work_ms`` (the mail server's answer), complete the
execution, and tell the claimer. The loop stops when a cycle claims nothing
and nothing is in flight. The connections are opened before the clock starts,
as the psycopg baseline's is; prepared statements are off, as there (see
:mod:`.baseline`).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import psycopg
from django.db import connection

from benchmarks.checks import already_ended_problems, finished_problems
from benchmarks.protocol import Result
from django_planton import Task
from django_planton.runner import sync_tasks

from .baseline import ACTIVE_SQL, CLAIM_AND_MARK_SQL, COMPLETE_SQL
from .common import Params, drain_result
from .meters import Meter, peak_rss_mb
from .tables import drained_problems, psycopg_conninfo, reset_tables

Connection = psycopg.Connection[tuple[Any, ...]]
#: How long the end of a run waits for the executions in flight and the workers to finish.
STOP_TIMEOUT = 30.0


class InFlight:
    """The executions handed to the workers and not yet completed: the claimer waits on it.

    The workers also count here what their completions did, under the same
    lock: their statements, those that ended nothing, those that failed.
    """

    def __init__(self) -> None:
        self.count = 0
        self.statements = 0
        self.not_ended = 0
        self.errors: list[str] = []
        self.changed = threading.Condition()

    def add(self, executions: int) -> None:
        with self.changed:
            self.count += executions

    def done(self, *, ended: bool | None, error: str = "") -> None:
        """One execution handled: ``ended`` is None when its completion failed (``error``)."""
        with self.changed:
            self.count -= 1
            self.statements += 1
            if ended is None:
                self.errors.append(error)
            elif not ended:
                self.not_ended += 1
            self.changed.notify()

    def wait_below(self, limit: int, timeout: float) -> int:
        """Until fewer than ``limit`` are in flight (or ``timeout`` s): how many are."""
        with self.changed:
            self.changed.wait_for(lambda: self.count < limit, timeout)
            return self.count


class Workers:
    """``count`` worker threads, each with its own autocommit connection, fed by a queue.

    Each takes an execution id, waits ``seconds`` (the mail server's answer),
    completes the execution and tells :class:`InFlight`. :meth:`stop` ends
    them and closes their connections, whatever happened to the claimer.
    """

    def __init__(self, conninfo: dict[str, Any], count: int, seconds: float) -> None:
        self.seconds = seconds
        self.in_flight = InFlight()
        self.queue: queue.Queue[int | None] = queue.Queue()
        self._connections = [connect(conninfo) for _ in range(count)]
        self._threads = [
            # daemon: a worker stuck on the database must not keep the process alive
            threading.Thread(target=self._work, args=(conn,), name="worker", daemon=True)
            for conn in self._connections
        ]
        for thread in self._threads:
            thread.start()

    def hand(self, execution_ids: list[int]) -> None:
        """Count the claimed executions in flight, then queue them for the workers."""
        self.in_flight.add(len(execution_ids))
        for execution_id in execution_ids:
            self.queue.put(execution_id)

    def _work(self, conn: Connection) -> None:
        while (execution_id := self.queue.get()) is not None:
            time.sleep(self.seconds)
            try:
                ended = conn.execute(COMPLETE_SQL, [execution_id]).rowcount == 1
            except psycopg.Error as error:  # counted, so the claimer is not left waiting
                self.in_flight.done(ended=None, error=f"completing {execution_id}: {error}")
            else:
                self.in_flight.done(ended=ended)

    def stop(self) -> list[str]:
        """Let those in flight end, stop the threads, close the connections; what went wrong."""
        self.in_flight.wait_below(1, STOP_TIMEOUT)  # after a timeout, some may still run
        for _ in self._threads:
            self.queue.put(None)
        for thread in self._threads:
            thread.join(STOP_TIMEOUT)
        stuck = sum(thread.is_alive() for thread in self._threads)
        for conn in self._connections:
            conn.close()
        return [f"{stuck} worker thread(s) still running at the end"] if stuck else []


def connect(conninfo: dict[str, Any]) -> Connection:
    """Autocommit, no prepared statements: the psycopg baseline's connection."""
    return psycopg.connect(**conninfo, autocommit=True, prepare_threshold=None)


def claim(
    conn: Connection, task_id: int, concurrency: int, in_flight: int
) -> tuple[list[int], int]:
    """One cycle, in a transaction: the executions claimed, and the cycle's statements.

    The limit is the concurrency less the active instructions read or less
    ``in_flight``, counted before the transaction began, whichever is more.
    The executions' ``started_at`` is ``now()``, the transaction's start: an
    execution completed after that start but before the read would free a
    slot that, in the table, its successor seems to share with it (it did
    not: the read came after the completion). A worker's completion has
    committed before it leaves the in-flight count.
    """
    with conn.transaction():
        active = [int(row[0]) for row in conn.execute(ACTIVE_SQL, [task_id])]
        limit = concurrency - max(len(active), in_flight)
        if limit <= 0:
            return [], 1
        claimed = conn.execute(
            CLAIM_AND_MARK_SQL, {"active": active, "limit": limit, "task_id": task_id}
        ).fetchall()
    return [int(row[0]) for row in claimed], 2


def claim_until_drained(
    conn: Connection, task_id: int, concurrency: int, workers: Workers, deadline: float
) -> tuple[int, bool]:
    """The claimer's loop: its statements, and whether it drained before ``deadline``.

    After a cycle that claimed nothing, the next waits for a completion, so
    the end of a drain does not spin on the database while the last
    executions are in flight.
    """
    statements = 0
    waiting_for = concurrency  # the next cycle starts once fewer than this are in flight
    while time.monotonic() < deadline:
        in_flight = workers.in_flight.wait_below(waiting_for, deadline - time.monotonic())
        claimed, counted = claim(conn, task_id, concurrency, in_flight)
        statements += counted
        workers.hand(claimed)
        if claimed:
            waiting_for = concurrency
        elif in_flight == 0:
            return statements, True
        else:
            waiting_for = in_flight
    return statements, False


def run(params: Params) -> Result:
    """Drain with the threaded loop on connections of its own; then check the tables."""
    accounts, concurrency, timeout = params["accounts"], params["concurrency"], params["timeout"]
    reset_tables(accounts)
    task = Task(name="bench_threaded", schedule=lambda context: [], concurrency=concurrency)
    (task_id,) = sync_tasks([task]).keys()
    conninfo = psycopg_conninfo()
    connection.close()

    meter = Meter()
    workers = Workers(conninfo, concurrency, int(params["work_ms"]) / 1000)
    try:
        with connect(conninfo) as claimer:
            meter.start()
            statements, finished = claim_until_drained(
                claimer, task_id, concurrency, workers, time.monotonic() + timeout
            )
            meter.stop()
    finally:
        problems = workers.stop()
    peak = peak_rss_mb()  # before the check reads every execution
    in_flight = workers.in_flight
    problems += finished_problems(finished, timeout)
    problems += already_ended_problems(in_flight.not_ended) + in_flight.errors
    problems += drained_problems(task.name, accounts, concurrency)
    queries = {"ALL": statements + in_flight.statements}
    return drain_result(accounts, meter, queries, peak_rss_mb=peak, problems=problems)
