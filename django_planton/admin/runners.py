"""Runners: the ``run_planton`` processes, alive or dead, read-only.

Each running process keeps its row fresh (:mod:`django_planton.runner.heartbeat`);
a row not seen for three heartbeat intervals is a dead runner, shown with
an icon, until housekeeping prunes it an hour later. Alive or dead and the
relative times count from the database's clock, read in the list's own
query.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.templatetags.static import static
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..models import RunnerProcess
from ..sql import DatabaseNow
from .common import ReadOnlyAdmin
from .display import EMPTY, ago, format_time, time_cell

if TYPE_CHECKING:
    from django.utils.safestring import SafeString

    RunnerAdminBase = admin.ModelAdmin[RunnerProcess]
else:
    RunnerAdminBase = admin.ModelAdmin


def _now_of(obj: RunnerProcess) -> datetime | None:
    now: datetime | None = getattr(obj, "database_now", None)  # see get_queryset()
    return now


def is_dead(obj: RunnerProcess) -> bool:
    """Whether the runner missed three heartbeats, by the database's clock when it was read."""
    now = _now_of(obj)
    return now is not None and obj.dead_after < now


# A runner's page: everything its row holds, read-only.
FIELDS = (
    "hostname",
    "pid",
    "state_display",
    "started_display",
    "last_seen_display",
    "heartbeat_interval",
    "dead_after",
    "tasks_display",
    "version",
)


@admin.register(RunnerProcess)
class RunnerProcessAdmin(ReadOnlyAdmin, RunnerAdminBase):
    list_display = [
        "hostname",
        "pid",
        "state_display",
        "started_display",
        "last_seen_display",
        "tasks_display",
        "version",
    ]
    list_display_links = ["hostname"]
    search_fields = ["hostname"]
    fields = FIELDS
    readonly_fields = FIELDS

    class Media:
        css = {"all": ["django_planton/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[RunnerProcess]:
        # The database's time, in the same statement: alive or dead by the
        # clock the heartbeats are stamped with.
        return super().get_queryset(request).annotate(database_now=DatabaseNow())

    @admin.display(description=_("state"))
    def state_display(self, obj: RunnerProcess) -> SafeString | str:
        if not is_dead(obj):
            return gettext("alive")
        return format_html(
            '<span class="planton-dead"><img src="{}" alt="" width="13" height="13"> {}</span>',
            static("admin/img/icon-alert.svg"),
            gettext("dead"),
        )

    @admin.display(description=_("started"), ordering="started_at")
    def started_display(self, obj: RunnerProcess) -> SafeString | str:
        return self._relative(obj.started_at, obj)

    @admin.display(description=_("last seen"), ordering="last_seen_at")
    def last_seen_display(self, obj: RunnerProcess) -> SafeString | str:
        return self._relative(obj.last_seen_at, obj)

    @admin.display(description=_("tasks"))
    def tasks_display(self, obj: RunnerProcess) -> SafeString | str:
        """Each task's name, its executor in the tooltip."""
        tasks = [task for task in obj.tasks if isinstance(task, dict)]
        if not tasks:
            return EMPTY
        return format_html_join(
            ", ",
            '<span title="{}">{}</span>',
            ((task.get("executor", ""), task.get("name", "")) for task in tasks),
        )

    @staticmethod
    def _relative(value: datetime, obj: RunnerProcess) -> SafeString | str:
        now = _now_of(obj)
        if now is None:
            return format_time(value)
        return time_cell(value, ago(value, now))
