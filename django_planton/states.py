"""The states of an execution, and what each way of ending one writes.

One place for the fields an ending sets, so that ``complete()``, ``fail()``
and ``terminate()`` (on one execution or on a queryset) stay alike.
"""

from __future__ import annotations

import traceback
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

__all__ = ["ExecutionState", "Outcome", "describe_error", "ended_values", "outcome_of"]


class ExecutionState(models.TextChoices):
    RUNNING = "RUNNING", _("Running")
    COMPLETED = "COMPLETED", _("Completed")


class Outcome(models.TextChoices):
    """What became of an execution, derived from the reference schema's columns.

    The stored ``state`` only says RUNNING or COMPLETED, as in the reference;
    operators need to tell a success from a failure and a termination:

    - ``RUNNING``: ``ended_at`` is empty;
    - ``TERMINATED``: ``terminated_at`` is set (the runner or an operator ended it);
    - ``FAILED``: ended with an ``error`` (``fail()``, or a receiver that raised);
    - ``SUCCEEDED``: ended, with neither.

    The queryset methods ``running()``, ``succeeded()``, ``failed()`` and
    ``terminated()`` select the same rows as :func:`outcome_of` names.
    """

    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")
    TERMINATED = "terminated", _("Terminated")


def outcome_of(*, ended_at: datetime | None, terminated_at: datetime | None, error: Any) -> Outcome:
    """The :class:`Outcome` of an execution with these column values."""
    if ended_at is None:
        return Outcome.RUNNING
    if terminated_at is not None:
        return Outcome.TERMINATED
    if error is not None:
        return Outcome.FAILED
    return Outcome.SUCCEEDED


def describe_error(error: BaseException | str | dict[str, Any]) -> dict[str, Any]:
    """A JSON description of an error, for ``MaintenanceTaskExecution.error``."""
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"type": "Error", "message": error}
    return {
        "type": type(error).__qualname__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)),
    }


def ended_values(
    now: datetime | Now,
    *,
    error: dict[str, Any] | None = None,
    terminated_reason: str | None = None,
) -> dict[str, Any]:
    """The fields that end an execution at ``now``.

    Completed or failed by whoever worked on it: that is also its last sign
    of life. Terminated by the runner or an operator: the reason is recorded
    and the worker's last heartbeat is left as it was. ``now`` is a time the
    database gave, or the database's "now" itself as an expression.
    """
    values: dict[str, Any] = {"state": ExecutionState.COMPLETED.value, "ended_at": now}
    if terminated_reason is not None:
        values["terminated_at"] = now
        values["terminated_reason"] = terminated_reason
    else:
        values["last_seen_at"] = now
        values["error"] = error
    return values
