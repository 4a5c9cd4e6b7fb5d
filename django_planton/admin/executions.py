"""Executions: read-only history; terminating running ones needs its permission.

Each execution shows its outcome in words (Running, Succeeded, Failed,
Terminated), with an icon only when something went wrong; the list filters
by outcome, and the running ones list oldest first. Ages and durations of
running executions are counted by the database's clock, read in the list's
own query.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.db.models.expressions import Combinable
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from ..models import MaintenanceTaskExecution
from ..querysets import MaintenanceTaskExecutionQuerySet
from ..sql import DatabaseNow
from ..states import Outcome
from .common import (
    ExecutionAdminBase,
    ReadOnlyAdmin,
    _error_html,
    _error_summary,
    _format_duration,
)
from .display import EMPTY, format_seconds, format_time, outcome_badge

if TYPE_CHECKING:
    from django.utils.safestring import SafeString
    from django_stubs_ext import StrOrPromise

#: The outcome filter's query parameter; the tasks' pages link with it.
OUTCOME_PARAMETER = "outcome"

EXECUTIONS_CHANGELIST = "admin:django_planton_maintenancetaskexecution_changelist"


def executions_url(task_id: int, outcome: str | None = None) -> str:
    """The executions' list, filtered to one task (and one outcome)."""
    url = f"{reverse(EXECUTIONS_CHANGELIST)}?maintenance_task__id__exact={task_id}"
    return f"{url}&{OUTCOME_PARAMETER}={outcome}" if outcome else url


class OutcomeFilter(admin.SimpleListFilter):
    """Running, Succeeded, Failed or Terminated (see :class:`~django_planton.states.Outcome`)."""

    title = _("outcome")
    parameter_name = OUTCOME_PARAMETER

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return list(Outcome.choices)

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[MaintenanceTaskExecution]
    ) -> QuerySet[MaintenanceTaskExecution]:
        value = self.value()
        if value not in Outcome.values:
            return queryset
        assert isinstance(queryset, MaintenanceTaskExecutionQuerySet)
        return queryset.with_outcome(value)


def execution_title(execution: MaintenanceTaskExecution) -> str:
    """``send_user_email #1000 (instruction 42)``: what an execution's page is called."""
    return gettext("%(task)s #%(id)s (instruction %(instruction)s)") % {
        "task": execution.maintenance_task.nid,
        "id": execution.pk,
        "instruction": Truncator(execution.instruction).chars(60),
    }


@admin.register(MaintenanceTaskExecution)
class MaintenanceTaskExecutionAdmin(ReadOnlyAdmin, ExecutionAdminBase):
    # Few, narrow columns, to fit 1,400 px beside the filters: a retry's
    # attempt is tagged beside its instruction; the host and why it failed or
    # was terminated are on the page (and in the outcome's tooltip).
    list_display = [
        "id",
        "maintenance_task",
        "instruction_display",
        "outcome_display",
        "started_display",
        "duration_display",
    ]
    list_filter = [OutcomeFilter, "maintenance_task", "hostname"]
    list_select_related = ["maintenance_task"]
    search_fields = ["instruction"]
    date_hierarchy = "started_at"
    actions = ["terminate"]
    fields = (
        "outcome_display",
        "maintenance_task",
        "instruction",
        "attempt",
        "started_display",
        "ended_display",
        "duration_display",
        "hostname",
        "last_seen_display",
        "terminated_reason",
        "error_display",
        "created_display",
    )
    readonly_fields = fields

    class Media:
        css = {"all": ["django_planton/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[MaintenanceTaskExecution]:
        # The database's time, in the same statement: running executions'
        # ages by the clock that stamped their start.
        return super().get_queryset(request).annotate(database_now=DatabaseNow())

    def get_ordering(
        self, request: HttpRequest
    ) -> list[str | Combinable] | tuple[str | Combinable, ...] | tuple[()]:
        """The running ones oldest first: the one stuck for 12 minutes is on top."""
        if request.GET.get(OUTCOME_PARAMETER) == Outcome.RUNNING:
            return ("started_at", "id")
        return super().get_ordering(request)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: MaintenanceTaskExecution | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(title=execution_title(obj), subtitle=None)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def has_terminate_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.terminate_{opts.model_name}")

    @admin.display(description=_("instruction"), ordering="instruction")
    def instruction_display(self, obj: MaintenanceTaskExecution) -> SafeString | str:
        """The instruction, and which attempt at it when it is a retry."""
        instruction = Truncator(obj.instruction).chars(24)
        if obj.attempt <= 1:
            return instruction
        return format_html(
            '{} <span class="planton-tag">{}</span>',
            instruction,
            gettext("attempt %(number)d") % {"number": obj.attempt},
        )

    @admin.display(description=_("outcome"))
    def outcome_display(self, obj: MaintenanceTaskExecution) -> SafeString:
        """The outcome's word; why it failed or was terminated in its tooltip."""
        return outcome_badge(obj.outcome, detail=self.note_display(obj))

    @admin.display(description=_("started"), ordering="started_at")
    def started_display(self, obj: MaintenanceTaskExecution) -> str:
        return format_time(obj.started_at)

    @admin.display(description=_("ended"))
    def ended_display(self, obj: MaintenanceTaskExecution) -> str:
        return format_time(obj.ended_at)

    @admin.display(description=_("last seen"))
    def last_seen_display(self, obj: MaintenanceTaskExecution) -> str:
        return format_time(obj.last_seen_at)

    @admin.display(description=_("created"))
    def created_display(self, obj: MaintenanceTaskExecution) -> str:
        return format_time(obj.created_at)

    @admin.display(description=_("duration"), ordering="started_at")
    def duration_display(self, obj: MaintenanceTaskExecution) -> SafeString | str:
        """How long it ran; for a running one, how long it has run so far (in italics)."""
        if obj.ended_at is not None:
            return _format_duration(obj.duration)
        now: datetime | None = getattr(obj, "database_now", None)  # see get_queryset()
        age = (now - obj.started_at) if now is not None else obj.duration
        span = format_seconds(max(age or timedelta(0), timedelta(0)).total_seconds())
        return format_html(
            '<em title="{}">{}</em>', gettext("running for %(span)s") % {"span": span}, span
        )

    @admin.display(description=_("error or reason"))
    def note_display(self, obj: MaintenanceTaskExecution) -> str:
        """Why it failed or was terminated, in one short line."""
        if obj.terminated_reason:
            return Truncator(obj.terminated_reason).chars(60)
        if obj.error is not None:
            return _error_summary(obj.error, length=60)
        return EMPTY

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
