"""Admin for watching executions and steering tasks without a deploy.

Executions are history: read-only for everyone. Terminating running ones is
an action that needs the ``terminate_maintenancetaskexecution`` permission.
Failing instructions are read-only too; releasing them ("retry now") and
giving them up are actions that need the change permission on them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
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
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .executors import default_executor
from .models import FailingInstruction, MaintenanceTask, MaintenanceTaskExecution
from .querysets import (
    FailingInstructionQuerySet,
    MaintenanceTaskExecutionQuerySet,
    MaintenanceTaskQuerySet,
)
from .registry import registry
from .sql import DatabaseNow

if TYPE_CHECKING:
    from django.forms import ModelForm
    from django_stubs_ext import StrOrPromise

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


class FailingStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return [
            ("held_back", _("held back")),
            ("given_up", _("given up")),
            ("due", _("due for retry")),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[FailingInstruction]
    ) -> QuerySet[FailingInstruction]:
        if self.value() == "held_back":
            return queryset.filter(_held_back())
        if self.value() == "given_up":
            return queryset.filter(given_up_at__isnull=False)
        if self.value() == "due":
            return queryset.filter(_due_for_retry())
        return queryset


class FirstFailingInstructions(FailingFormSetBase):
    """A task's failing instructions, the first ``INLINE_FAILING_LIMIT`` of them."""

    def get_queryset(self) -> QuerySet[FailingInstruction]:
        # Sliced once and kept: the forms index into its evaluated rows.
        if not hasattr(self, "_first_rows"):
            self._first_rows = super().get_queryset()[:INLINE_FAILING_LIMIT]
        return self._first_rows


class FailingInstructionInline(FailingInlineBase):
    """A read-only list of the task's failing instructions on its page."""

    model = FailingInstruction
    formset = FirstFailingInstructions
    fields = ("instruction", "state_display", "failures", "last_failed_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[FailingInstruction]:
        return _with_state(super().get_queryset(request))

    def has_add_permission(self, request: HttpRequest, obj: MaintenanceTask | None = None) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: MaintenanceTask | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: MaintenanceTask | None = None
    ) -> bool:
        return False

    @admin.display(description=_("state"))
    def state_display(self, obj: FailingInstruction) -> str:
        return _state_of(obj)


@admin.register(MaintenanceTask)
class MaintenanceTaskAdmin(TaskAdminBase):
    list_display = [
        "nid",
        "running_count",
        "effective_concurrency_display",
        "maximum_concurrent_execution_count",
        "is_paused",
        "attempt_number",
        "next_attempt_at",
        "last_dispatched_at",
        "has_error",
        "failing_display",
        "executor_display",
    ]
    list_editable = ["maximum_concurrent_execution_count", "is_paused"]
    list_filter = ["is_paused"]
    search_fields = ["nid"]
    readonly_fields = [
        "nid",
        "concurrency",
        "attempt_number",
        "last_attempted_at",
        "last_dispatched_at",
        "saturated_active_count",
        "last_error_display",
        "failing_instructions_display",
        "executor_display",
        "created_at",
        "updated_at",
    ]
    fields = [
        "nid",
        "is_paused",
        "maximum_concurrent_execution_count",
        "concurrency",
        "maximum_execution_duration",
        "next_attempt_at",
        "attempt_number",
        "last_attempted_at",
        "last_dispatched_at",
        "saturated_active_count",
        "last_error_display",
        "failing_instructions_display",
        "executor_display",
        "created_at",
        "updated_at",
    ]
    inlines = [FailingInstructionInline]
    actions = ["pause", "resume", "attempt_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[MaintenanceTask]:
        rows = super().get_queryset(request)
        assert isinstance(rows, MaintenanceTaskQuerySet)
        # Subqueries, not Count() over the relation: a second join would
        # multiply running_count by the failing rows.
        return rows.with_running_count().annotate(
            failing_count=_failing_count(),
            held_back_count=_failing_count(_held_back()),
            given_up_count=_failing_count(Q(given_up_at__isnull=False)),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from registered tasks (run_planton creates them)

    @admin.display(description=_("running"), ordering="running_count")
    def running_count(self, obj: MaintenanceTask) -> int:
        count: int = getattr(obj, "running_count", 0)  # annotated by get_queryset()
        return count

    @admin.display(description=_("effective concurrency"))
    def effective_concurrency_display(self, obj: MaintenanceTask) -> int:
        return obj.effective_concurrency

    @admin.display(description=_("error"), boolean=True)
    def has_error(self, obj: MaintenanceTask) -> bool:
        return bool(obj.last_error)

    @admin.display(description=_("last error"))
    def last_error_display(self, obj: MaintenanceTask) -> str:
        return format_html("<pre>{}</pre>", obj.last_error) if obj.last_error else "-"

    @admin.display(description=_("executor"))
    def executor_display(self, obj: MaintenanceTask) -> str:
        """Where its receivers run, as this process's registry says."""
        if obj.nid not in registry:
            return gettext("not registered in this process")
        chosen = registry.executor_of(obj.nid)
        if chosen is not None:
            return repr(chosen)
        return gettext("%(executor)r (PLANTON_EXECUTOR)") % {"executor": default_executor()}

    def _failing_summary(self, obj: MaintenanceTask) -> tuple[int, str]:
        """How many instructions of the task fail, and how many of those are held back, given up."""
        # Annotated by get_queryset(), which the change page's object comes from too.
        total = getattr(obj, "failing_count", None) or 0
        held_back = getattr(obj, "held_back_count", None) or 0
        given_up = getattr(obj, "given_up_count", None) or 0
        parts = [
            gettext("%(count)d held back") % {"count": held_back},
            gettext("%(count)d given up") % {"count": given_up},
        ]
        if due := total - held_back - given_up:
            parts.append(gettext("%(count)d due for retry") % {"count": due})
        return total, ", ".join(parts)

    @admin.display(description=_("failing"), ordering="failing_count")
    def failing_display(self, obj: MaintenanceTask) -> str:
        total, summary = self._failing_summary(obj)
        if not total:
            return "-"
        return format_html('<a href="{}">{}</a>', _failing_url(obj.pk), summary)

    @admin.display(description=_("failing instructions"))
    def failing_instructions_display(self, obj: MaintenanceTask) -> str:
        total, summary = self._failing_summary(obj)
        if not total:
            return "-"
        text = ngettext(
            "all %(count)d failing instruction", "all %(count)d failing instructions", total
        ) % {"count": total}
        return format_html('<a href="{}">{}</a> ({})', _failing_url(obj.pk), text, summary)

    @admin.action(description=_("Pause selected tasks"), permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[MaintenanceTask]) -> None:
        count = queryset.update(is_paused=True, updated_at=DatabaseNow())
        self.message_user(request, ngettext("%d task paused.", "%d tasks paused.", count) % count)

    @admin.action(description=_("Resume selected tasks"), permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[MaintenanceTask]) -> None:
        count = queryset.update(is_paused=False, updated_at=DatabaseNow())
        self.message_user(request, ngettext("%d task resumed.", "%d tasks resumed.", count) % count)

    @admin.action(description=_("Attempt selected tasks now"), permissions=["change"])
    def attempt_now(self, request: HttpRequest, queryset: QuerySet[MaintenanceTask]) -> None:
        count = queryset.update(next_attempt_at=DatabaseNow(), updated_at=DatabaseNow())
        self.message_user(
            request,
            ngettext(
                "%d task will be attempted at the runners' next look.",
                "%d tasks will be attempted at the runners' next look.",
                count,
            )
            % count,
        )


class TerminatedFilter(admin.SimpleListFilter):
    title = _("terminated")
    parameter_name = "terminated"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[MaintenanceTaskExecution]
    ) -> QuerySet[MaintenanceTaskExecution]:
        if self.value() == "yes":
            return queryset.filter(terminated_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(terminated_at__isnull=True)
        return queryset


@admin.register(MaintenanceTaskExecution)
class MaintenanceTaskExecutionAdmin(ExecutionAdminBase):
    list_display = [
        "id",
        "maintenance_task",
        "instruction",
        "attempt",
        "state",
        "started_at",
        "ended_at",
        "duration_display",
        "hostname",
        "terminated_reason",
        "has_error",
    ]
    list_filter = ["state", "maintenance_task", "hostname", TerminatedFilter]
    list_select_related = ["maintenance_task"]
    search_fields = ["instruction"]
    date_hierarchy = "started_at"
    actions = ["terminate"]
    fields = (
        "maintenance_task",
        "instruction",
        "attempt",
        "state",
        "started_at",
        "ended_at",
        "duration_display",
        "hostname",
        "last_seen_at",
        "terminated_at",
        "terminated_reason",
        "error_display",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_terminate_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.terminate_{opts.model_name}")

    @admin.display(description=_("duration"))
    def duration_display(self, obj: MaintenanceTaskExecution) -> str:
        return _format_duration(obj.duration)

    @admin.display(description=_("error"), boolean=True)
    def has_error(self, obj: MaintenanceTaskExecution) -> bool:
        return obj.error is not None

    @admin.display(description=_("error"))
    def error_display(self, obj: MaintenanceTaskExecution) -> str:
        return _error_html(obj.error)

    @admin.action(description=_("Terminate selected running executions"), permissions=["terminate"])
    def terminate(self, request: HttpRequest, queryset: QuerySet[MaintenanceTaskExecution]) -> None:
        assert isinstance(queryset, MaintenanceTaskExecutionQuerySet)
        selected = queryset.count()
        ended = queryset.terminate(f"terminated by {request.user.get_username()} in the admin")
        skipped = selected - len(ended)
        self.message_user(
            request,
            ngettext("%d execution terminated.", "%d executions terminated.", len(ended))
            % len(ended),
            messages.SUCCESS if ended else messages.WARNING,
        )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%d selected execution was not running and was left as it is.",
                    "%d selected executions were not running and were left as they are.",
                    skipped,
                )
                % skipped,
                messages.WARNING,
            )


@admin.register(FailingInstruction)
class FailingInstructionAdmin(FailingAdminBase):
    """Instructions held back or given up by their task's retry policy.

    Read-only: the runners write these rows. "Retry now" deletes them (each
    instruction may be dispatched at its task's next attempt), "Give up"
    keeps them from being dispatched until released; both need the change
    permission. Deleting a row is what "Retry now" does, so there is no
    delete of its own.
    """

    list_display = [
        "maintenance_task",
        "instruction",
        "state_display",
        "failures",
        "last_failed_at",
        "last_error_summary",
    ]
    list_filter = [("maintenance_task", admin.RelatedOnlyFieldListFilter), FailingStateFilter]
    list_select_related = ["maintenance_task"]
    search_fields = ["instruction", "maintenance_task__nid"]
    actions = ["retry_now", "give_up"]
    fields = (
        "maintenance_task",
        "instruction",
        "state_display",
        "failures",
        "last_failed_at",
        "retry_at",
        "given_up_at",
        "last_error_display",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[FailingInstruction]:
        return _with_state(super().get_queryset(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: FailingInstruction | None = None
    ) -> bool:
        # The model's permission stands for the actions; no row is edited.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(
        self, request: HttpRequest, obj: FailingInstruction | None = None
    ) -> bool:
        return False

    @admin.display(description=_("state"))
    def state_display(self, obj: FailingInstruction) -> str:
        return _state_of(obj)

    @admin.display(description=_("last error"))
    def last_error_summary(self, obj: FailingInstruction) -> str:
        return _error_summary(obj.last_error)

    @admin.display(description=_("last error"))
    def last_error_display(self, obj: FailingInstruction) -> str:
        return _error_html(obj.last_error)

    @admin.action(description=_("Retry now"), permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[FailingInstruction]) -> None:
        assert isinstance(queryset, FailingInstructionQuerySet)
        count = queryset.release()
        self.message_user(
            request,
            ngettext(
                "%d instruction released: it may be dispatched at its task's next attempt.",
                "%d instructions released: they may be dispatched at their tasks' next attempt.",
                count,
            )
            % count,
        )

    @admin.action(description=_("Give up"), permissions=["change"])
    def give_up(self, request: HttpRequest, queryset: QuerySet[FailingInstruction]) -> None:
        assert isinstance(queryset, FailingInstructionQuerySet)
        selected = queryset.count()
        count = queryset.give_up()
        self.message_user(
            request,
            ngettext(
                "%d instruction given up: it is not dispatched again until released.",
                "%d instructions given up: they are not dispatched again until released.",
                count,
            )
            % count,
            messages.SUCCESS if count else messages.WARNING,
        )
        if skipped := selected - count:
            self.message_user(
                request,
                ngettext(
                    "%d selected instruction was given up already and was left as it is.",
                    "%d selected instructions were given up already and were left as they are.",
                    skipped,
                )
                % skipped,
                messages.WARNING,
            )
