"""The seam between the loop and where attempt state lives, and its in-memory side."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import UnexpectedStateError
from .rules import DEFAULT_DELAY, compute_delay, run_cycle
from .task import Task

__all__ = ["BatchCycleRunner", "CycleReport", "CycleRunner", "MemoryCycleRunner"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleReport:
    """What a :class:`CycleRunner` tells the loop after an attempt (or before the first)."""

    delay: float
    instructions: tuple[str, ...] = ()
    errors: tuple[BaseException, ...] = ()
    #: Why the task was not attempted (paused, not due yet, every slot
    #: taken), in words for an operator; None when it was attempted.
    waiting: str | None = None


class CycleRunner(Protocol):
    """The seam between the loop and where attempt state lives.

    ``first`` is asked once per task when the loop starts and says how long
    to wait before the first attempt; ``run`` performs one attempt and says
    how long to wait before the next. Both must not raise for errors of user
    code: they report them in ``CycleReport.errors``.
    """

    def first(self, task: Task) -> CycleReport: ...

    def run(self, task: Task, may_schedule: Callable[[], bool]) -> CycleReport: ...


@runtime_checkable
class BatchCycleRunner(CycleRunner, Protocol):
    """A :class:`CycleRunner` that can also attempt several tasks at once.

    The loop hands it the tasks that found nothing last time and are due
    together, so that a runner keeping state in a database pays one
    transaction for all of them instead of one each: waiting tasks then cost
    next to nothing. ``run_batch`` returns one report per task, in order.
    """

    def run_batch(
        self, tasks: Sequence[Task], may_schedule: Callable[[], bool]
    ) -> list[CycleReport]: ...


def first_report(runner: CycleRunner, task: Task) -> CycleReport:
    """The runner's ``first`` report; one that raises waits the default delay."""
    try:
        return runner.first(task)
    except Exception as error:
        return CycleReport(delay=DEFAULT_DELAY, errors=(error,))


def attempt(
    runner: CycleRunner, tasks: list[Task], may_schedule: Callable[[], bool], *, batch: bool
) -> list[CycleReport]:
    """One attempt of one task, or of a batch; checks that a batch gets a report per task."""
    if not batch:
        return [runner.run(tasks[0], may_schedule)]
    assert isinstance(runner, BatchCycleRunner)
    reports = runner.run_batch(tasks, may_schedule)
    if len(reports) != len(tasks):
        raise UnexpectedStateError(
            f"run_batch returned {len(reports)} reports for {len(tasks)} tasks."
        )
    return list(reports)


def errors_of(*errors: BaseException | None) -> tuple[BaseException, ...]:
    """The errors that are there, as a report carries them."""
    return tuple(error for error in errors if error is not None)


class MemoryCycleRunner:
    """Keeps each task's attempt number in this process's memory.

    This is the reference library's behaviour: fine for one process. Two
    processes each keep their own clock; the Django layer's database runner
    shares one instead.
    """

    def __init__(self, get_active_task_instructions: Callable[[str], Sequence[str]]) -> None:
        self._get_active = get_active_task_instructions
        self._attempt_numbers: dict[str, int] = {}

    def first(self, task: Task) -> CycleReport:
        self._attempt_numbers[task.name] = 0
        delay, error = compute_delay(task, 0)
        return CycleReport(delay=delay, errors=errors_of(error))

    def run(self, task: Task, may_schedule: Callable[[], bool]) -> CycleReport:
        attempt_number = self._attempt_numbers.get(task.name, 0)
        try:
            active = self._get_active(task.name)
        except Exception as error:
            delay, delay_error = compute_delay(task, attempt_number)
            return CycleReport(delay=delay, errors=errors_of(error, delay_error))
        outcome = run_cycle(
            task,
            attempt_number=attempt_number,
            active_task_instructions=active,
            may_schedule=may_schedule,
        )
        self._attempt_numbers[task.name] = outcome.attempt_number
        delay, delay_error = compute_delay(task, outcome.attempt_number)
        return CycleReport(
            delay=delay,
            instructions=outcome.instructions,
            errors=errors_of(*outcome.errors, delay_error),
        )
