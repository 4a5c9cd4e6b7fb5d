"""What a task is, and the values a schedule and the loop's callbacks receive."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import InvalidTaskConfigurationError
from .retry import DEFAULT_RETRY, RetryPolicy

__all__ = [
    "DelayFunction",
    "ErrorEvent",
    "LimitFunction",
    "ScheduleContext",
    "ScheduleFunction",
    "Task",
    "TaskEvent",
    "validate_task",
]


@dataclass(frozen=True, slots=True)
class ScheduleContext:
    """What a ``schedule`` function gets to decide which instructions to return."""

    task_name: str
    #: Instructions dispatched earlier and still running, as strings. A
    #: schedule must not return any of them again.
    active_task_instructions: tuple[str, ...]
    #: The task's effective concurrency for this cycle.
    concurrency: int
    #: The most instructions this cycle may return.
    limit: int
    #: Attempts since the last one that produced instructions.
    attempt_number: int = 0
    #: Instructions whose last execution failed and that the task's
    #: :class:`RetryPolicy` holds back (or has given up). A schedule leaves
    #: them out as it leaves out the active ones; one returned anyway is not
    #: dispatched.
    held_back_instructions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One dispatched instruction."""

    task_name: str
    instruction: str


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An error met while scheduling a task; ``error`` is the original exception."""

    task_name: str
    error: BaseException


ScheduleFunction = Callable[[ScheduleContext], Sequence[str | int]]
DelayFunction = Callable[[int], float]
LimitFunction = Callable[[int, Sequence[str]], int]


@dataclass(frozen=True, slots=True, eq=False)
class Task:
    """A named unit of recurring work.

    ``schedule`` claims work and returns instructions (short strings or
    integers, such as row ids). ``calculate_delay(attempt_number)`` gives the
    seconds to wait before the next attempt, where ``attempt_number`` counts
    the attempts since the last one that produced instructions; the
    :mod:`django_planton.backoff` helpers build common ones.
    ``calculate_limit(concurrency, active)`` caps a batch; by default it is
    the number of free slots. ``retry`` holds back an instruction whose
    execution failed (see :class:`RetryPolicy`; ``None`` dispatches it again
    at once).

    Tasks compare by identity: the Django layer uses a task as a signal
    sender, and two tasks that happen to share options are still two tasks.
    """

    name: str
    schedule: ScheduleFunction
    concurrency: int = 1
    calculate_delay: DelayFunction | None = None
    calculate_limit: LimitFunction | None = None
    retry: RetryPolicy | None = DEFAULT_RETRY

    def __post_init__(self) -> None:
        validate_task(self)


def validate_task(task: Task) -> None:
    """Raise if ``task`` can never be scheduled; shared by ``Task`` and ``Planton``."""
    if not isinstance(task.name, str) or not task.name.strip():
        raise InvalidTaskConfigurationError(
            "Task name must be a non-empty string.", task_name=task.name or None
        )
    if (
        isinstance(task.concurrency, bool)
        or not isinstance(task.concurrency, int)
        or task.concurrency < 1
    ):
        raise InvalidTaskConfigurationError(
            "Task concurrency must be greater than 0.", task_name=task.name
        )
    if not callable(task.schedule):
        raise InvalidTaskConfigurationError("Task schedule must be callable.", task_name=task.name)
    for attribute in ("calculate_delay", "calculate_limit"):
        value = getattr(task, attribute)
        if value is not None and not callable(value):
            raise InvalidTaskConfigurationError(
                f"Task {attribute} must be callable or None.", task_name=task.name
            )
    if task.retry is not None and not isinstance(task.retry, RetryPolicy):
        raise InvalidTaskConfigurationError(
            f"Task retry must be a django_planton.RetryPolicy or None, got {task.retry!r}.",
            task_name=task.name,
        )
