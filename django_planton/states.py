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

__all__ = ["ExecutionState", "describe_error", "ended_values"]


class ExecutionState(models.TextChoices):
    RUNNING = "RUNNING", _("Running")
    COMPLETED = "COMPLETED", _("Completed")


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
