"""The user's code of one due task, run behind its own savepoint.

On any error (a raising schedule or calculate_limit, an invalid batch, a
database error the schedule swallowed) its claims roll back while the task's
row stays locked, so that the failed attempt is recorded before another
runner can see the task as due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.backends.base.base import BaseDatabaseWrapper

from ..core import CycleOutcome, Task, run_cycle
from ..errors import PlantonError
from ..sql import InstructionStates, TaskRow
from .savepoint import LazySavepoint

__all__ = ["Attempt", "HeldBackReport", "attempt_user_code"]

logger = logging.getLogger("django_planton")


@dataclass(slots=True)
class Attempt:
    """A due task's attempt within a batch; written once every task of the batch ran."""

    task: Task
    row: TaskRow
    #: How many of the task's executions were running.
    running: int = 0
    #: The task's effective concurrency in this attempt.
    concurrency: int = 1
    #: Failures in a row of the instructions that are retries.
    failures: dict[str, int] = field(default_factory=dict)
    #: None when the attempt failed; then ``errors`` says why.
    outcome: CycleOutcome | None = None
    errors: tuple[BaseException, ...] = ()

    def execution_attempt(self, instruction: str) -> int:
        """1 for an instruction's first execution, one more per failure in a row before it."""
        return self.failures.get(instruction, 0) + 1


def attempt_user_code(
    task: Task,
    row: TaskRow,
    instructions: InstructionStates,
    *,
    may_schedule: Callable[[], bool],
    connection: BaseDatabaseWrapper,
    max_instruction_length: int,
) -> Attempt:
    """Run the cycle's rules and the user's code; roll the code back if it failed.

    The savepoint is lazy: taken only if the user's code sends a statement,
    so a schedule that returns without querying (and a saturated task, whose
    schedule is not called) costs no round trip.
    """
    savepoint = LazySavepoint(connection)
    concurrency = row.maximum_concurrent_execution_count or task.concurrency
    with savepoint:
        outcome = run_cycle(
            task,
            attempt_number=row.attempt_number,
            active_task_instructions=instructions.active,
            held_back_instructions=instructions.held_back,
            concurrency=concurrency,
            may_schedule=may_schedule,
            max_instruction_length=max_instruction_length,
        )
    attempt = Attempt(task, row, len(instructions.active), concurrency, instructions.failures)
    errors = outcome.errors
    if not errors and savepoint.taken and transaction_broken(connection):
        errors = (
            PlantonError(
                f"The schedule of task {task.name!r} caught a database error and "
                "returned; the error broke its transaction, so its claims are rolled back."
            ),
        )
    if errors:
        savepoint.rollback()
        attempt.errors = errors
        return attempt
    savepoint.release()
    attempt.outcome = outcome
    return attempt


def transaction_broken(connection: BaseDatabaseWrapper) -> bool:
    """Whether a schedule swallowed a database error that broke the transaction.

    PostgreSQL refuses every statement after an error until a rollback;
    Django marks the transaction after an error inside an ``atomic`` block
    without a savepoint. Either way the schedule must count as failed (and
    its savepoint be rolled back), not look like a lost connection.
    """
    if connection.needs_rollback:
        return True
    if connection.vendor != "postgresql" or connection.connection is None:
        return False
    info = getattr(connection.connection, "info", None)
    status = getattr(info, "transaction_status", None)
    return status is not None and status.name == "INERROR"


class HeldBackReport:
    """Logs a held-back instruction that a schedule returned anyway, once per instruction.

    Not an error: a schedule need not know which of its instructions failed.
    Logged again only after the instruction was dispatched once more.
    """

    def __init__(self) -> None:
        self._logged: set[tuple[str, str]] = set()

    def report(self, attempts: list[Attempt]) -> None:
        for attempt in attempts:
            outcome = attempt.outcome
            if outcome is None:
                continue
            name = attempt.task.name
            for instruction in outcome.instructions:
                self._logged.discard((name, instruction))
            for instruction in outcome.held_back:
                if (name, instruction) in self._logged:
                    continue
                self._logged.add((name, instruction))
                logger.info(
                    "Task %s returned instruction %s, which its retry policy holds back "
                    "after a failure; not dispatched (leave out "
                    "context.held_back_instructions in the schedule)",
                    name,
                    instruction,
                    extra={"task_name": name, "instruction": instruction},
                )
