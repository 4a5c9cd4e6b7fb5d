"""Where the loop's events go: the log, and the ``on_task`` / ``on_error`` callbacks.

Neither a callback that raises nor an error of a task may stop the loop, so
everything here catches and logs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..errors import PlantonError
from .runners import CycleReport
from .task import ErrorEvent, Task, TaskEvent

__all__ = ["EventSink", "log_error"]

logger = logging.getLogger("django_planton")


class EventSink:
    """Hands a loop's events to its callbacks; logs every error once."""

    def __init__(
        self,
        on_task: Callable[[TaskEvent], object] | None,
        on_error: Callable[[ErrorEvent], object] | None,
    ) -> None:
        self._on_task = on_task
        self._on_error = on_error

    def report(self, task: Task, report: CycleReport) -> None:
        """Report an attempt: its errors, then each dispatched instruction."""
        for error in report.errors:
            self.error(task.name, error)
        if not report.instructions:
            return
        logger.debug(
            "Task %s dispatched %d instruction(s): %s",
            task.name,
            len(report.instructions),
            ", ".join(report.instructions),
            extra={"task_name": task.name},
        )
        if self._on_task is None:
            return
        for instruction in report.instructions:
            try:
                self._on_task(TaskEvent(task_name=task.name, instruction=instruction))
            except Exception as error:
                self.error(task.name, error)

    def error(self, task_name: str, error: BaseException) -> None:
        """Log an error of a task and hand it to ``on_error``."""
        log_error(task_name, error)
        if self._on_error is None:
            return
        try:
            self._on_error(ErrorEvent(task_name=task_name, error=error))
        except Exception:
            logger.exception("on_error callback failed for task %s", task_name)


def log_error(task_name: str, error: BaseException) -> None:
    """Log an error of a task at ERROR, the way every error of the loop is logged."""
    logger.error(
        "Task %s: %s: %s",
        task_name,
        type(error).__name__,
        error,
        # Our own validation errors say all there is to say; a user's
        # exception deserves its traceback.
        exc_info=None if isinstance(error, PlantonError) else error,
        extra={"task_name": task_name},
    )
