"""What the admin's pages share: base classes for the type checker, error and
duration formatting, the failing instructions' states as SQL.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import display_for_value
from django.db.models import (
    Case,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext

from ..models import FailingInstruction, MaintenanceTask, MaintenanceTaskExecution
from ..sql import DatabaseNow

if TYPE_CHECKING:
    from django.forms import ModelForm

    # ModelAdmin is generic for the type checker only (django-stubs).
    TaskAdminBase = admin.ModelAdmin[MaintenanceTask]
    ExecutionAdminBase = admin.ModelAdmin[MaintenanceTaskExecution]
    FailingAdminBase = admin.ModelAdmin[FailingInstruction]
    FailingInlineBase = admin.TabularInline[FailingInstruction, MaintenanceTask]
    FailingFormSetBase = BaseInlineFormSet[
        FailingInstruction, MaintenanceTask, ModelForm[FailingInstruction]
    ]
else:
    TaskAdminBase = ExecutionAdminBase = FailingAdminBase = admin.ModelAdmin
    FailingInlineBase = admin.TabularInline
    FailingFormSetBase = BaseInlineFormSet


class ReadOnlyAdmin:
    """A record the runners write: the admin only shows it (nothing added, changed or deleted)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


FAILING_CHANGELIST = "admin:django_planton_failinginstruction_changelist"

# How many failing instructions a task's page lists; a link leads to all of them.
INLINE_FAILING_LIMIT = 20


def _format_duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return str(timedelta(seconds=round(seconds)))


def _error_html(error: Any) -> str:
    """A stored error in full: its traceback when it has one, else its JSON, escaped."""
    if error is None:
        return "-"
    if isinstance(error, dict) and "traceback" in error:
        text = error["traceback"]
    else:
        text = json.dumps(error, indent=2, ensure_ascii=False)
    return format_html("<pre>{}</pre>", text)


def _error_summary(error: Any, length: int = 80) -> str:
    """One line of a stored error: ``type: message``, cut to ``length`` characters."""
    if error is None:
        return "-"
    if isinstance(error, dict) and ("type" in error or "message" in error):
        kind, message = str(error.get("type") or ""), str(error.get("message") or "")
        text = f"{kind}: {message}" if kind and message else kind or message
    else:
        text = json.dumps(error, ensure_ascii=False)
    return Truncator(" ".join(text.split())).chars(length)


# -- failing instructions ------------------------------------------------------------------


def _held_back() -> Q:
    """Not given up, and still waiting out the retry delay, by the database's clock."""
    return Q(given_up_at__isnull=True, retry_at__gt=DatabaseNow())


def _due_for_retry() -> Q:
    """Not given up, and its retry delay over (or never set): dispatched at the next attempt."""
    return Q(given_up_at__isnull=True) & (Q(retry_at__isnull=True) | Q(retry_at__lte=DatabaseNow()))


def _with_state(rows: QuerySet[FailingInstruction]) -> QuerySet[FailingInstruction]:
    """Each row with ``is_held_back``, by the clock the runners compare ``retry_at`` with."""
    held_back = Case(When(_held_back(), then=Value(True)), default=Value(False))
    return rows.annotate(is_held_back=held_back)


def _state_of(row: FailingInstruction) -> str:
    if row.given_up_at is not None:
        return gettext("given up")
    held_back = getattr(row, "is_held_back", None)  # annotated by _with_state()
    if held_back is None:  # a row read without it: the host's clock will do
        held_back = row.retry_at is not None and row.retry_at > timezone.now()
    if held_back and row.retry_at is not None:
        until = display_for_value(row.retry_at, "-")
        return gettext("held back until %(time)s") % {"time": until}
    return gettext("due for retry")


def _failing_count(condition: Q | None = None) -> Subquery:
    """How many failing instructions the outer task has (meeting ``condition``)."""
    rows = FailingInstruction.objects.filter(maintenance_task=OuterRef("pk"))
    if condition is not None:
        rows = rows.filter(condition)
    count = Func(F("pk"), function="COUNT", output_field=IntegerField())
    return Subquery(rows.order_by().annotate(count=count).values("count"))


def _failing_url(task_id: int) -> str:
    return f"{reverse(FAILING_CHANGELIST)}?maintenance_task__id__exact={task_id}"
