"""Tasks: steering without a deploy (pause, resume, attempt now, concurrency override)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.db.models import (
    Q,
    QuerySet,
)
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from ..executors import default_executor
from ..models import MaintenanceTask
from ..querysets import MaintenanceTaskQuerySet
from ..registry import registry
from ..sql import DatabaseNow

if TYPE_CHECKING:
    pass
from .common import TaskAdminBase, _failing_count, _failing_url, _held_back
from .failing import FailingInstructionInline


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
