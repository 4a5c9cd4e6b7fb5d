"""Admin for watching executions and steering tasks without a deploy.

Executions are history: read-only for everyone. Terminating running ones is
an action that needs the ``terminate_maintenancetaskexecution`` permission.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .models import MaintenanceTask, MaintenanceTaskExecution
from .querysets import MaintenanceTaskExecutionQuerySet, MaintenanceTaskQuerySet
from .sql import DatabaseNow

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    # ModelAdmin is generic for the type checker only (django-stubs).
    TaskAdminBase = admin.ModelAdmin[MaintenanceTask]
    ExecutionAdminBase = admin.ModelAdmin[MaintenanceTaskExecution]
else:
    TaskAdminBase = ExecutionAdminBase = admin.ModelAdmin


def _format_duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return str(timedelta(seconds=round(seconds)))


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
        "last_error_display",
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
        "last_error_display",
        "created_at",
        "updated_at",
    ]
    actions = ["pause", "resume", "attempt_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[MaintenanceTask]:
        rows = super().get_queryset(request)
        assert isinstance(rows, MaintenanceTaskQuerySet)
        return rows.with_running_count()

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
        if obj.error is None:
            return "-"
        if isinstance(obj.error, dict) and "traceback" in obj.error:
            text = obj.error["traceback"]
        else:
            text = json.dumps(obj.error, indent=2, ensure_ascii=False)
        return format_html("<pre>{}</pre>", text)

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
