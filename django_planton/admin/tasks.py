"""Tasks: steering without a deploy (pause, resume, attempt now, concurrency override).

The list fits a 1,400 px screen, the admin's sidebar open: a column per
figure an operator scans (running, concurrency, next attempt, last error,
failing instructions, links to the executions); the rest is on the task's page,
with its activity charts (:mod:`.dashboard`) and the schedule's preview
(:mod:`.preview`). Relative times count from the database's clock, read in
the list's own query.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from ..models import MaintenanceTask
from ..querysets import MaintenanceTaskQuerySet
from ..registry import registry
from ..sql import DatabaseNow
from ..states import Outcome
from ..status import describe_executor
from .common import TaskAdminBase, _failing_count, _failing_url, _held_back
from .dashboard import dashboard_view, task_activity
from .display import EMPTY, ago, error_cell, format_time, time_cell, until
from .executions import executions_url
from .failing import FailingInstructionInline
from .preview import preview_action, preview_view

if TYPE_CHECKING:
    from django.utils.safestring import SafeString


def _now_of(obj: MaintenanceTask) -> datetime | None:
    now: datetime | None = getattr(obj, "database_now", None)  # see get_queryset()
    return now


@admin.register(MaintenanceTask)
class MaintenanceTaskAdmin(TaskAdminBase):
    list_display = [
        "name_display",
        "running_count",
        "maximum_concurrent_execution_count",
        "is_paused",
        "next_attempt_display",
        "last_error_cell",
        "failing_display",
        "executions_links",
    ]
    list_editable = ["maximum_concurrent_execution_count", "is_paused"]
    search_fields = ["nid"]
    readonly_fields = [
        "nid",
        "registered_display",
        "concurrency",
        "attempt_number",
        "next_attempt_relative",
        "last_attempted_display",
        "last_dispatched_display",
        "saturated_active_count",
        "last_error_display",
        "failing_instructions_display",
        "executor_display",
        "created_display",
        "updated_display",
    ]
    fields = [
        "nid",
        "registered_display",
        "executor_display",
        "is_paused",
        "maximum_concurrent_execution_count",
        "concurrency",
        "maximum_execution_duration",
        "next_attempt_at",
        "next_attempt_relative",
        "attempt_number",
        "last_attempted_display",
        "last_dispatched_display",
        "saturated_active_count",
        "last_error_display",
        "failing_instructions_display",
        "created_display",
        "updated_display",
    ]
    inlines = [FailingInstructionInline]
    actions = ["pause", "resume", "attempt_now", "preview_schedule"]

    class Media:
        css = {"all": ["django_planton/admin.css"]}

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard),
                name="django_planton_dashboard",
            ),
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.preview),
                name="django_planton_maintenancetask_preview",
            ),
        ]
        return own + super().get_urls()

    def dashboard(self, request: HttpRequest) -> HttpResponse:
        return dashboard_view(self, request)

    def preview(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return preview_view(self, request, object_id)

    def get_queryset(self, request: HttpRequest) -> QuerySet[MaintenanceTask]:
        rows = super().get_queryset(request)
        assert isinstance(rows, MaintenanceTaskQuerySet)
        # Subqueries, not Count() over the relation: a second join would
        # multiply running_count by the failing rows.
        return rows.with_running_count().annotate(
            failing_count=_failing_count(),
            held_back_count=_failing_count(_held_back()),
            given_up_count=_failing_count(Q(given_up_at__isnull=False)),
            database_now=DatabaseNow(),
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The task's page, with its activity: counts, durations, charts."""
        task = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if task is not None:
            context["activity"] = task_activity(task)
            context["has_preview_permission"] = self.has_change_permission(request, task)
        return super().change_view(request, object_id, form_url, context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows come from registered tasks (run_planton creates them)

    # -- the list's columns ----------------------------------------------------------

    @admin.display(description=_("name"), ordering="nid")
    def name_display(self, obj: MaintenanceTask) -> SafeString | str:
        if obj.nid in registry:
            return obj.nid
        return format_html(
            '{} <span class="planton-tag" title="{}">{}</span>',
            obj.nid,
            gettext("This process's code registers no task of this name."),
            gettext("not registered"),
        )

    @admin.display(description=_("running / concurrency"), ordering="running_count")
    def running_count(self, obj: MaintenanceTask) -> str:
        """How many run, of the effective concurrency (the override, else the code's)."""
        count: int = getattr(obj, "running_count", 0)  # annotated by get_queryset()
        return f"{count} / {obj.effective_concurrency}"

    @admin.display(description=_("next attempt"), ordering="next_attempt_at")
    def next_attempt_display(self, obj: MaintenanceTask) -> SafeString | str:
        if obj.is_paused:
            return gettext("paused")
        now = _now_of(obj)
        if now is None:
            return format_time(obj.next_attempt_at)
        return time_cell(obj.next_attempt_at, until(obj.next_attempt_at, now))

    @admin.display(description=_("last error"))
    def last_error_cell(self, obj: MaintenanceTask) -> SafeString | str:
        now = _now_of(obj)
        if now is None:
            return obj.last_error or EMPTY
        return error_cell(obj.last_error, obj.last_attempted_at, now)

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
            return EMPTY
        return format_html('<a href="{}">{}</a>', _failing_url(obj.pk), summary)

    @admin.display(description=_("executions"))
    def executions_links(self, obj: MaintenanceTask) -> SafeString:
        links = [
            (executions_url(obj.pk), gettext("all")),
            (executions_url(obj.pk, Outcome.FAILED), gettext("failed")),
        ]
        return format_html_join(" \u00b7 ", '<a href="{}">{}</a>', links)

    # -- the task's page -------------------------------------------------------------

    @admin.display(description=_("registered"))
    def registered_display(self, obj: MaintenanceTask) -> str:
        if obj.nid in registry:
            return gettext("yes, in this process's code")
        return gettext(
            "not registered: this process's code has no task of this name (renamed or "
            "removed?); no runner schedules it"
        )

    @admin.display(description=_("next attempt"))
    def next_attempt_relative(self, obj: MaintenanceTask) -> str:
        now = _now_of(obj)
        if obj.is_paused:
            return gettext("paused")
        relative = until(obj.next_attempt_at, now) if now is not None else ""
        if obj.next_attempt_at is None:
            return relative
        return f"{format_time(obj.next_attempt_at)} ({relative})"

    @admin.display(description=_("last attempted"))
    def last_attempted_display(self, obj: MaintenanceTask) -> str:
        return self._time_and_ago(obj, obj.last_attempted_at)

    @admin.display(description=_("last dispatched"))
    def last_dispatched_display(self, obj: MaintenanceTask) -> str:
        return self._time_and_ago(obj, obj.last_dispatched_at)

    @admin.display(description=_("created"))
    def created_display(self, obj: MaintenanceTask) -> str:
        return format_time(obj.created_at)

    @admin.display(description=_("updated"))
    def updated_display(self, obj: MaintenanceTask) -> str:
        return format_time(obj.updated_at)

    def _time_and_ago(self, obj: MaintenanceTask, value: datetime | None) -> str:
        now = _now_of(obj)
        if value is None or now is None:
            return format_time(value)
        return f"{format_time(value)} ({ago(value, now)})"

    @admin.display(description=_("last error"))
    def last_error_display(self, obj: MaintenanceTask) -> SafeString | str:
        """The last failed attempt's error in full, with when it happened."""
        if not obj.last_error:
            return EMPTY
        return format_html(
            '<p class="planton-error">{}</p><pre class="planton-traceback">{}</pre>',
            gettext("At %(time)s:") % {"time": self._time_and_ago(obj, obj.last_attempted_at)},
            obj.last_error,
        )

    @admin.display(description=_("executor"))
    def executor_display(self, obj: MaintenanceTask) -> str:
        """Where its receivers run, as this process's registry says."""
        return describe_executor(obj.nid) or gettext("not registered in this process")

    @admin.display(description=_("failing instructions"))
    def failing_instructions_display(self, obj: MaintenanceTask) -> str:
        total, summary = self._failing_summary(obj)
        if not total:
            return EMPTY
        text = ngettext(
            "all %(count)d failing instruction", "all %(count)d failing instructions", total
        ) % {"count": total}
        return format_html('<a href="{}">{}</a> ({})', _failing_url(obj.pk), text, summary)

    # -- actions ---------------------------------------------------------------------

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

    @admin.action(
        description=_("Preview the schedule (run it, roll it back)"), permissions=["change"]
    )
    def preview_schedule(
        self, request: HttpRequest, queryset: QuerySet[MaintenanceTask]
    ) -> HttpResponse:
        return preview_action(self, request, queryset)
