"""Errors raised or reported by django-planton.

Every error has a stable ``code`` so that logs, signal receivers and error
trackers can tell them apart without matching on messages. This module imports
nothing from Django: the scheduling core uses it on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "DuplicateTaskNameError",
    "InvalidTaskConfigurationError",
    "PlantonError",
    "UnexpectedStateError",
    "UnexpectedTaskInstructionsError",
]


class PlantonError(Exception):
    """Base class of every error django-planton raises or reports."""

    code: str = "PLANTON_ERROR"


class UnexpectedStateError(PlantonError):
    """A value computed at run time (a limit, a delay) is not one the loop can use."""

    code = "UNEXPECTED_STATE_ERROR"


class InvalidTaskConfigurationError(PlantonError):
    """A task was declared with options that can never work."""

    code = "INVALID_TASK_CONFIGURATION"

    def __init__(self, message: str, *, task_name: str | None = None) -> None:
        super().__init__(message)
        self.task_name = task_name


class DuplicateTaskNameError(PlantonError):
    """Two tasks share a name; names link code to database rows, so they must be unique."""

    code = "DUPLICATE_TASK_NAME"

    def __init__(self, duplicate_task_name: str) -> None:
        super().__init__(f"Task name {duplicate_task_name!r} is used by more than one task.")
        self.duplicate_task_name = duplicate_task_name


class UnexpectedTaskInstructionsError(PlantonError):
    """A ``schedule`` function returned a batch that breaks the instruction rules.

    ``unexpected_task_instructions`` is the batch exactly as ``schedule``
    returned it, so that the receiver of the error can see what went wrong.
    """

    code = "UNEXPECTED_TASK_INSTRUCTIONS"

    def __init__(
        self,
        message: str,
        *,
        task_name: str,
        unexpected_task_instructions: Sequence[Any] | Any,
    ) -> None:
        super().__init__(message)
        self.task_name = task_name
        self.unexpected_task_instructions = unexpected_task_instructions
