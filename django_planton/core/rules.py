"""The rules of one cycle, as pure functions: delays, limits, instructions, and the cycle.

Everything here is deterministic given its inputs, so the loop, the
in-memory runner and the database runner all apply the same rules, and
each rule lives here once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UnexpectedStateError, UnexpectedTaskInstructionsError
from .task import ScheduleContext, Task

__all__ = [
    "DEFAULT_DELAY",
    "CycleOutcome",
    "DelayBounds",
    "NextAttempt",
    "compute_delay",
    "compute_limit",
    "run_cycle",
    "validate_instructions",
]

#: Seconds between attempts when a task has no ``calculate_delay``, or when
#: its ``calculate_delay`` fails.
DEFAULT_DELAY = 1.0


def compute_delay(task: Task, attempt_number: int) -> tuple[float, BaseException | None]:
    """Seconds before the next attempt, and the error met computing them, if any.

    A failing or nonsensical ``calculate_delay`` must not kill the loop, so
    it falls back to :data:`DEFAULT_DELAY` and hands the error back for
    reporting.
    """
    if task.calculate_delay is None:
        return DEFAULT_DELAY, None
    try:
        value: Any = task.calculate_delay(attempt_number)
    except Exception as error:
        return DEFAULT_DELAY, error
    if type(value) is float and 0.0 <= value < math.inf:  # the usual answer, told cheaply
        return value, None
    try:
        usable = (
            not isinstance(value, bool)
            and isinstance(value, (int, float))
            and math.isfinite(value)
            and value >= 0
        )
    except OverflowError:  # an int too large for a float
        usable = False
    if not usable:
        return DEFAULT_DELAY, UnexpectedStateError(
            f"calculate_delay of task {task.name!r} returned {value!r}; "
            "expected a finite number of seconds, 0 or more."
        )
    return float(value), None


@dataclass(frozen=True, slots=True)
class NextAttempt:
    """When to attempt a task again: ``stored`` on its row, ``wait`` by this process."""

    #: Seconds from now to the next attempt, as the back-off asks.
    stored: float
    #: Seconds this process waits before looking again: ``stored`` capped
    #: by ``max_wait``, so an operator's change to the row is seen in time.
    wait: float
    #: The error ``calculate_delay`` met, if any.
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class DelayBounds:
    """The one place where a task's delay is floored and capped.

    ``poll_interval`` is the shortest wait when looking sooner cannot help (a
    paused task, every slot taken, a row another process holds);
    ``max_wait`` the longest wait before a runner reads a task's row again.
    """

    poll_interval: float
    max_wait: float

    def next_attempt(
        self, task: Task, attempt_number: int, *, saturated: bool = False, paused: bool = False
    ) -> NextAttempt:
        """The delay after an attempt; a saturated or paused task waits at least a poll."""
        delay, error = compute_delay(task, attempt_number)
        if saturated or paused:
            # A freed slot wakes the task; a delay of 0 after work would
            # otherwise spin until an execution ends.
            delay = max(delay, self.poll_interval)
        wait = self.capped(delay)
        if saturated:
            # A slot freed by another process, without a notification, is
            # seen at the next look: within a poll interval, whatever the delay.
            wait = min(wait, self.poll_interval)
        return NextAttempt(stored=delay, wait=wait, error=error)

    def capped(self, delay: float) -> float:
        """A wait of this process: never negative, never above ``max_wait``."""
        return max(0.0, min(delay, self.max_wait))

    def after_database_failures(self, failures: int) -> float:
        """Back off from a lost database: the poll interval, doubled per failure, capped."""
        return min(self.poll_interval * float(2 ** min(failures - 1, 10)), self.max_wait)


def compute_limit(task: Task, concurrency: int, active: Sequence[str]) -> int:
    """The most instructions this cycle may return; raises on a limit the loop cannot use."""
    limit: Any
    if task.calculate_limit is None:  # by default, the free slots
        limit = concurrency - len(active)
    else:
        limit = task.calculate_limit(concurrency, active)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise UnexpectedStateError(
            f"Limit of task {task.name!r} must be an integer of at least 0; got {limit!r}."
        )
    return limit


def _normalise(member: str | int) -> str:
    if isinstance(member, str):
        return str.__str__(member)
    return int.__repr__(member)


def _storage_problem(instruction: str, max_length: int | None) -> str | None:
    """Why a store of instructions cannot hold ``instruction``, or None."""
    if max_length is not None and len(instruction) > max_length:
        return (
            f"an instruction of {len(instruction)} characters exceeds "
            f"PLANTON_MAX_INSTRUCTION_LENGTH ({max_length})."
        )
    if max_length is not None and "\x00" in instruction:
        return f"{instruction!r} contains a NUL character, which databases reject."
    return None


def validate_instructions(
    task_name: str,
    result: Any,
    *,
    limit: int,
    active: Iterable[str],
    max_length: int | None = None,
) -> tuple[str, ...]:
    """Check a batch against the instruction rules and return it as strings.

    The whole batch is rejected on the first broken rule: dispatching part
    of a batch the schedule got wrong would hide the bug. ``max_length``
    (set by a runner that stores instructions) also rejects instructions
    longer than that, or holding a NUL character.
    """

    def reject(reason: str) -> UnexpectedTaskInstructionsError:
        return UnexpectedTaskInstructionsError(
            f"Task {task_name!r} returned unexpected instructions: {reason}",
            task_name=task_name,
            unexpected_task_instructions=result,
        )

    if not isinstance(result, (list, tuple)):
        raise reject(f"expected a list or tuple, got {type(result).__name__}.")
    if not result:  # most attempts of a quiet task
        return ()
    if len(result) > limit:
        raise reject(f"{len(result)} instructions exceed the limit of {limit}.")
    active_set = set(active)
    seen: set[str] = set()
    instructions: list[str] = []
    for member in result:
        if isinstance(member, bool) or not isinstance(member, str | int):
            raise reject(f"{member!r} is neither a str nor an int.")
        instruction = _normalise(member)
        if instruction in seen:
            raise reject(f"{instruction!r} appears more than once.")
        if instruction in active_set:
            raise reject(f"{instruction!r} is already active.")
        problem = _storage_problem(instruction, max_length)
        if problem is not None:
            raise reject(problem)
        seen.add(instruction)
        instructions.append(instruction)
    return tuple(instructions)


def _normalise_active(task_name: str, active: Any) -> tuple[str, ...]:
    if type(active) is list and not active:  # most attempts of a quiet task
        return ()
    if isinstance(active, str | bytes) or not isinstance(active, Iterable):
        raise UnexpectedStateError(
            f"Active instructions of task {task_name!r} must be a sequence; got {active!r}."
        )
    return tuple(str(instruction) for instruction in active)


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleOutcome:
    """What one cycle produced: instructions to dispatch and errors to report."""

    #: Validated instructions, as strings, in the order ``schedule`` returned them.
    instructions: tuple[str, ...] = ()
    errors: tuple[BaseException, ...] = ()
    #: The attempt number after this cycle: 0 after instructions, one more
    #: after an attempt that found none, unchanged when ``schedule`` was not called.
    attempt_number: int
    #: Whether ``schedule`` was called at all.
    scheduled: bool = False
    #: The limit handed to ``schedule`` (``None`` when it was not computed).
    limit: int | None = None
    #: Whether the cycle found every slot taken (or a limit of 0).
    saturated: bool = False
    #: Held-back instructions the schedule returned anyway; not dispatched.
    held_back: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        """True when ``schedule`` raised or returned an invalid batch."""
        return self.scheduled and bool(self.errors)


def run_cycle(
    task: Task,
    *,
    attempt_number: int,
    active_task_instructions: Any,
    concurrency: int | None = None,
    may_schedule: Callable[[], bool] = lambda: True,
    max_instruction_length: int | None = None,
    held_back_instructions: Sequence[str] = (),
) -> CycleOutcome:
    """Run steps 2 to 6 of one attempt, given the active instructions.

    Never raises for errors of user code: they come back in
    ``CycleOutcome.errors`` so that an adapter can decide what to roll back.
    ``concurrency`` overrides the task's own (an operator's override);
    ``may_schedule`` is asked right before ``schedule`` is called, so that a
    stopping loop starts no new schedule; ``max_instruction_length`` is the
    storage rule of :func:`validate_instructions`. ``held_back_instructions``
    (those a retry policy holds back) reach the schedule in its context, and
    any it returns anyway are left out of the dispatch, not counted as an
    error: the schedule may not know about failures.
    """
    concurrency = task.concurrency if concurrency is None else concurrency
    try:
        active = _normalise_active(task.name, active_task_instructions)
    except UnexpectedStateError as error:
        return CycleOutcome(attempt_number=attempt_number, errors=(error,))
    if len(active) >= concurrency:
        return CycleOutcome(attempt_number=attempt_number, saturated=True)
    try:
        limit = compute_limit(task, concurrency, active)
    except Exception as error:
        return CycleOutcome(attempt_number=attempt_number, errors=(error,))
    if limit == 0 or not may_schedule():
        return CycleOutcome(attempt_number=attempt_number, saturated=True)
    context = ScheduleContext(
        task_name=task.name,
        active_task_instructions=active,
        concurrency=concurrency,
        limit=limit,
        attempt_number=attempt_number,
        held_back_instructions=tuple(held_back_instructions),
    )
    try:
        result = task.schedule(context)
        instructions = validate_instructions(
            task.name, result, limit=limit, active=active, max_length=max_instruction_length
        )
    except Exception as error:
        return CycleOutcome(
            attempt_number=attempt_number + 1, errors=(error,), scheduled=True, limit=limit
        )
    held_back: tuple[str, ...] = ()
    if held_back_instructions and instructions:
        held = set(held_back_instructions)
        held_back = tuple(i for i in instructions if i in held)
        instructions = tuple(i for i in instructions if i not in held)
    return CycleOutcome(
        instructions=instructions,
        attempt_number=0 if instructions else attempt_number + 1,
        scheduled=True,
        limit=limit,
        held_back=held_back,
    )
