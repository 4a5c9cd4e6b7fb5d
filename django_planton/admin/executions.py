"""Executions: read-only history; terminating running ones needs its permission."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import MaintenanceTaskExecution
from ..querysets import MaintenanceTaskExecutionQuerySet
from .common import ExecutionAdminBase, _error_html, _format_duration

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


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
