"""The user's code of one due task, run behind its own savepoint.

On any error (a raising schedule or calculate_limit, an invalid batch, a
database error the schedule swallowed) its claims roll back while the task's
row stays locked, so that the failed attempt is recorded before another
runner can see the task as due.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.backends.base.base import BaseDatabaseWrapper

from ..core import CycleOutcome, Task, run_cycle
from ..errors import PlantonError
from ..sql import TaskRow
from .savepoint import LazySavepoint

__all__ = ["Attempt", "attempt_user_code"]


@dataclass(slots=True)
class Attempt:
    """A due task's attempt within a batch; written once every task of the batch ran."""

    task: Task
    row: TaskRow
    #: None when the attempt failed; then ``errors`` says why.
    outcome: CycleOutcome | None = None
    errors: tuple[BaseException, ...] = ()


def attempt_user_code(
    task: Task,
    row: TaskRow,
    active: list[str],
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
    with savepoint:
        outcome = run_cycle(
            task,
            attempt_number=row.attempt_number,
            active_task_instructions=active,
            concurrency=row.maximum_concurrent_execution_count or task.concurrency,
            may_schedule=may_schedule,
            max_instruction_length=max_instruction_length,
        )
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
        return Attempt(task, row, errors=errors)
    savepoint.release()
    return Attempt(task, row, outcome)


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
