"""Cut a schedule that keeps its batch waiting: cancel its statement at the batch's budget.

Quiet tasks due together share one transaction, so while one schedule runs,
the rows of the whole batch stay locked. A schedule that turns slow (a slow
query, a lock wait) would hold every other task of the batch for as long as
it takes, on every runner. When a schedule is still running at the batch's
time budget, its statement is cancelled from another thread: the schedule
fails, its savepoint rolls back, and the cycle runner sends it back to be
attempted alone (where it may take as long as it needs), while the rest of
the batch goes on.

- PostgreSQL: psycopg's ``cancel_safe()``, the protocol's cancel request;
- MariaDB/MySQL: ``KILL QUERY`` from a connection of the cutter's own;
- SQLite: never (an interrupted write rolls back the whole transaction);
  there every cycle holds the database's write lock anyway.

Time spent in Python (a ``time.sleep``, a slow loop) cannot be cut; the
schedule is then attempted alone from its next attempt on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["Cut", "ScheduleCutter"]

logger = logging.getLogger("django_planton")

# Seconds the thread waits for the next guard before it ends (the next starts
# another): long enough to serve a batch's schedules, short enough to leave
# no thread behind an idle runner for long.
_IDLE_LINGER = 1.0


@dataclass(slots=True)
class Cut:
    """One guarded batch: its deadline, the task whose schedule runs now, and whether its
    statement was cancelled (the batch's schedules run one after another)."""

    task_name: str
    deadline: float  # time.monotonic()
    cancel: Callable[[], None]
    done: bool = False
    finished: threading.Event = field(default_factory=threading.Event)


class ScheduleCutter:
    """A thread that cancels the statement of each guarded schedule past its deadline."""

    def __init__(self, using: str) -> None:
        self.using = using
        self._condition = threading.Condition()
        self._cuts: list[Cut] = []
        self._thread: threading.Thread | None = None
        self._stopping = False

    @contextlib.contextmanager
    def guard(
        self, connection: BaseDatabaseWrapper, task_name: str, deadline: float
    ) -> Iterator[Cut | None]:
        """Watch the schedules run in the block; yields their :class:`Cut` (None: not cuttable).

        The block sets ``task_name`` as each schedule starts: a cancel ends
        the statement of the one running at the deadline.
        """
        cancel = self._canceller(connection)
        if cancel is None:
            yield None
            return
        cut = Cut(task_name, deadline, cancel)
        with self._condition:
            self._cuts.append(cut)
            self._ensure_thread()
            self._condition.notify_all()
        try:
            yield cut
        finally:
            with self._condition:
                self._cuts.remove(cut)
                cancelling = cut.done
                self._condition.notify_all()  # no longer wait for its deadline
            if cancelling:
                cut.finished.wait(5.0)  # never let a late cancel reach the next statement

    def stop(self) -> None:
        """End the thread (a later guard starts it again)."""
        with self._condition:
            self._stopping = True
            thread = self._thread
            self._condition.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        with self._condition:
            self._stopping = False

    def _canceller(self, connection: BaseDatabaseWrapper) -> Callable[[], None] | None:
        raw = connection.connection
        if raw is None:
            return None
        if connection.vendor == "postgresql" and hasattr(raw, "cancel_safe"):
            return lambda: raw.cancel_safe(timeout=5.0)
        if connection.vendor == "mysql" and hasattr(raw, "thread_id"):
            thread_id = int(raw.thread_id())
            return lambda: self._kill_query(thread_id)
        return None

    def _kill_query(self, thread_id: int) -> None:
        own = connections[self.using]  # the cutter thread's own connection
        try:
            with own.cursor() as cursor:
                cursor.execute("KILL QUERY %s", [thread_id])
        finally:
            own.close()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="planton-cutter", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._condition:
                if self._stopping:
                    self._thread = None
                    return
                waiting = [cut for cut in self._cuts if not cut.done]
                if not waiting:
                    if not self._condition.wait(timeout=_IDLE_LINGER) and not self._cuts:
                        self._thread = None
                        return  # idle for a while: the next guard starts another
                    continue
                now = time.monotonic()
                due = [cut for cut in waiting if cut.deadline <= now]
                if not due:
                    self._condition.wait(min(cut.deadline for cut in waiting) - now)
                    continue
                for cut in due:
                    cut.done = True
            for cut in due:
                self._cancel(cut)

    def _cancel(self, cut: Cut) -> None:
        try:
            cut.cancel()
            logger.warning(
                "Task %s: its schedule was still running at its batch's time budget "
                "(PLANTON_BATCH_TIME_BUDGET); its statement was cancelled so that the other "
                "tasks of the batch go on, and it is attempted alone next.",
                cut.task_name,
                extra={"task_name": cut.task_name},
            )
        except Exception as error:  # a failed cancel cuts nothing, and must not end the thread
            logger.warning("Task %s: cancelling its slow schedule failed: %s", cut.task_name, error)
        finally:
            cut.finished.set()
