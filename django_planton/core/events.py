"""Where the loop's events go: the log, and the ``on_task`` / ``on_error`` callbacks.

Neither a callback that raises nor an error of a task may stop the loop, so
everything here catches and logs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from ..errors import PlantonError
from .runners import CycleReport
from .task import ErrorEvent, Task, TaskEvent

__all__ = ["ErrorLog", "EventSink", "error_log", "log_dispatched", "log_error"]

logger = logging.getLogger("django_planton")

# An error not seen for this long has its traceback logged again.
_FORGET_AFTER = 600.0
# The most distinct errors remembered; the oldest are forgotten first.
_REMEMBERED = 1000


class EventSink:
    """Hands a loop's events to its callbacks; logs every error once."""

    def __init__(
        self,
        on_task: Callable[[TaskEvent], object] | None,
        on_error: Callable[[ErrorEvent], object] | None,
    ) -> None:
        self._on_task = on_task
        self._on_error = on_error

    def report(
        self, task: Task, report: CycleReport, *, logged: frozenset[int] = frozenset()
    ) -> None:
        """Report an attempt: its errors, then each dispatched instruction.

        ``logged`` holds the ids of errors already logged (a batch's shared
        failure): they still go to ``on_error``, but are not logged again.
        """
        for error in report.errors:
            self.error(task.name, error, log=id(error) not in logged)
        if not report.instructions:
            return
        log_dispatched(task.name, report.instructions)
        if self._on_task is None:
            return
        for instruction in report.instructions:
            try:
                self._on_task(TaskEvent(task_name=task.name, instruction=instruction))
            except Exception as error:
                self.error(task.name, error)

    def batch_errors(self, tasks: Sequence[Task], reports: Sequence[CycleReport]) -> frozenset[int]:
        """Log once each error that several tasks of a batch share; returns their ids.

        A batch that loses its connection fails every one of its tasks with
        the same error: one line naming the tasks, not one line (and one
        traceback) per task.
        """
        names_by_error: dict[int, list[str]] = {}
        errors: dict[int, BaseException] = {}
        for task, report in zip(tasks, reports, strict=True):
            for error in report.errors:
                names_by_error.setdefault(id(error), []).append(task.name)
                errors[id(error)] = error
        shared = {key: names for key, names in names_by_error.items() if len(names) > 1}
        for key, names in shared.items():
            error_log.log(names, errors[key])
        return frozenset(shared)

    def error(self, task_name: str, error: BaseException, *, log: bool = True) -> None:
        """Log an error of a task (unless already logged) and hand it to ``on_error``."""
        if log:
            log_error(task_name, error)
        if self._on_error is None:
            return
        try:
            self._on_error(ErrorEvent(task_name=task_name, error=error))
        except Exception:
            logger.exception("on_error callback failed for task %s", task_name)


class ErrorLog:
    """Logs errors at ERROR, with a traceback once per distinct error.

    An outage makes every attempt fail with the same error, every second:
    its traceback is logged the first time, and each repeat is one line with
    a count. Errors are told apart by type and message; one not seen for ten
    minutes has its traceback logged again.
    """

    def __init__(self, *, forget_after: float = _FORGET_AFTER) -> None:
        self.forget_after = forget_after
        self._lock = threading.Lock()
        # (type, message) -> (times seen, last seen on the monotonic clock)
        self._seen: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()

    def log(self, task_names: Sequence[str], error: BaseException) -> None:
        """An error of these tasks (one, or a batch's)."""
        fields = {"task_name": task_names[0], "task_names": tuple(task_names)}
        self.report(_task_names(task_names), error, extra=fields)

    def report(
        self, what: str, error: BaseException, *, extra: Mapping[str, object] | None = None
    ) -> None:
        """Log ``"<what>: <Type>: <message>"``; the traceback only the first time."""
        count = self._count(error)
        fields = dict(extra or {})
        if count > 1:
            logger.error(
                "%s: %s: %s (the same error %d times; traceback logged the first time)",
                what,
                type(error).__name__,
                error,
                count,
                extra={**fields, "repeats": count},
            )
            return
        logger.error(
            "%s: %s: %s",
            what,
            type(error).__name__,
            error,
            # Our own validation errors say all there is to say; a user's
            # exception deserves its traceback.
            exc_info=None if isinstance(error, PlantonError) else error,
            extra=fields,
        )

    def _count(self, error: BaseException) -> int:
        """How many times this error was seen lately, this one included."""
        key = (type(error).__qualname__, str(error))
        now = time.monotonic()
        with self._lock:
            count, last = self._seen.pop(key, (0, now))
            if count and now - last > self.forget_after:
                count = 0
            count += 1
            self._seen[key] = (count, now)
            while len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
        return count


def _task_names(names: Sequence[str]) -> str:
    if len(names) == 1:
        return f"Task {names[0]}"
    shown = ", ".join(names[:10])
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return f"Tasks {shown}{more} (one batch)"


#: The process's error log: every error of the loop goes through it.
error_log = ErrorLog()


def log_dispatched(task_name: str, instructions: Sequence[str]) -> None:
    """The line (at DEBUG, so ``-v 2``) that says what an attempt dispatched."""
    logger.debug(
        "Task %s dispatched %d instruction(s): %s",
        task_name,
        len(instructions),
        ", ".join(instructions),
        extra={"task_name": task_name},
    )


def log_error(task_name: str, error: BaseException) -> None:
    """Log an error of a task at ERROR, the way every error of the loop is logged."""
    error_log.log([task_name], error)
