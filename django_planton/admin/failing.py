"""Failing instructions: their own page (Retry now, Give up) and the inline on a task's page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import FailingInstruction, MaintenanceTask
from ..querysets import FailingInstructionQuerySet
from .common import (
    INLINE_FAILING_LIMIT,
    FailingAdminBase,
    FailingFormSetBase,
    FailingInlineBase,
    _due_for_retry,
    _error_html,
    _error_summary,
    _held_back,
    _state_of,
    _with_state,
)

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


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
