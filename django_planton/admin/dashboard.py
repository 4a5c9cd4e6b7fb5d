"""The dashboard: every task and runner at a glance, and a task's activity charts.

The figures all come from :mod:`django_planton.status`, the one place
``planton_status`` and the Prometheus metrics read them from too, so the
three agree. Times are relative to the database's clock as ``status`` read
it. The charts are SVG drawn here (:mod:`.charts`); nothing loads from
elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from ..models import MaintenanceTask
from ..states import Outcome
from ..status import (
    OutcomeCounts,
    TaskStatus,
    executions_per_minute,
    fleet_status,
    problems,
    running_over_time,
    task_status,
)
from .charts import ChartFrame, merge_buckets, running_chart, stacked_bars
from .display import EMPTY, ago, error_cell, format_seconds, time_cell, until
from .executions import executions_url

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

__all__ = ["TaskRow", "dashboard_view", "task_activity", "task_charts"]

#: The day's chart draws a bar per this many minutes (144 bars).
DAY_BUCKET_MINUTES = 10

_ENDED = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.TERMINATED)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRow:
    """One task's line on the dashboard: its status, and the links and cells drawn from it."""

    status: TaskStatus
    url: str
    failed_url: str
    next_attempt: SafeString | str
    last_error: SafeString | str
    last_hour: SafeString
    last_day: SafeString
    durations: str
    executor: str


def dashboard_view(model_admin: ModelAdmin[MaintenanceTask], request: HttpRequest) -> HttpResponse:
    """Every task with its figures, and every runner; needs the view permission on tasks."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    status = fleet_status()
    ids = dict(MaintenanceTask.objects.values_list("nid", "pk"))
    rows = [
        _task_row(task, ids[task.name], status.now) for task in status.tasks if task.name in ids
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": gettext("Maintenance tasks dashboard"),
        "opts": model_admin.opts,
        "app_label": model_admin.opts.app_label,
        "now": status.now,
        "rows": rows,
        "runners": [
            {
                "status": runner,
                "started": time_cell(runner.started_at, ago(runner.started_at, status.now)),
                "last_seen": time_cell(runner.last_seen_at, ago(runner.last_seen_at, status.now)),
            }
            for runner in status.runners
        ],
        "any_runner_alive": any(runner.alive for runner in status.runners),
        "problems": problems(status),
    }
    return TemplateResponse(request, "admin/django_planton/dashboard.html", context)


def _task_row(task: TaskStatus, pk: int, now: datetime) -> TaskRow:
    failed_url = executions_url(pk, Outcome.FAILED)
    return TaskRow(
        status=task,
        url=reverse("admin:django_planton_maintenancetask_change", args=[pk]),
        failed_url=failed_url,
        next_attempt=gettext("paused")
        if task.paused
        else time_cell(task.next_attempt_at, until(task.next_attempt_at, now)),
        last_error=_last_error(task, failed_url, now),
        last_hour=outcome_counts(task.last_hour, pk, separator="<br>"),
        last_day=outcome_counts(task.last_day, pk, separator="<br>"),
        durations=_durations(task),
        # A break allowed after each "(" keeps "Threads(max_workers=None)" to a narrow column.
        executor=(task.executor or EMPTY).replace("(", "(\u200b"),
    )


def _last_error(task: TaskStatus, failed_url: str, now: datetime) -> SafeString | str:
    if not task.last_error:
        return EMPTY
    return format_html(
        '{} <a href="{}">{}</a>',
        error_cell(task.last_error, task.last_error_at, now),
        failed_url,
        gettext("failed executions"),
    )


def _durations(task: TaskStatus) -> str:
    if task.p50_seconds is None or task.p95_seconds is None:
        return EMPTY
    return gettext("%(p50)s / %(p95)s") % {
        "p50": format_seconds(task.p50_seconds),
        "p95": format_seconds(task.p95_seconds),
    }


def outcome_counts(counts: OutcomeCounts, pk: int, separator: str = " \u00b7 ") -> SafeString:
    """``120 succeeded · 3 failed``: the non-zero counts, each linked to its executions."""
    shown = [
        (outcome.value, executions_url(pk, outcome), count, str(outcome.label).lower())
        for outcome in (Outcome.RUNNING, *_ENDED)
        if (count := getattr(counts, outcome.value))
    ]
    if not shown:
        return mark_safe(EMPTY)
    return format_html_join(
        mark_safe(separator),  # markup of this module's own
        '<a class="planton-count planton-{}" href="{}">{} {}</a>',
        shown,
    )


# -- a task's page -------------------------------------------------------------------


def task_activity(task: MaintenanceTask) -> dict[str, Any] | None:
    """What the task's page shows above its failing instructions: figures and charts."""
    status = task_status(task.nid)
    if status is None:
        return None
    return {
        "status": status,
        "last_hour": outcome_counts(status.last_hour, task.pk),
        "last_day": outcome_counts(status.last_day, task.pk),
        "durations": _durations(status),
        "charts": task_charts(task.nid, status.concurrency),
    }


def _label_time(moment: datetime) -> str:
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    return date_format(moment, "H:i")


def task_charts(
    name: str, concurrency: int, label_time: Callable[[datetime], str] = _label_time
) -> list[SafeString]:
    """Executions per minute (last hour), per 10 minutes (last day), running against concurrency."""
    keys = [(outcome.value, str(outcome.label).lower()) for outcome in (*_ENDED, Outcome.RUNNING)]
    hour = executions_per_minute(name, since=timedelta(hours=1))
    day = merge_buckets(executions_per_minute(name, since=timedelta(days=1)), DAY_BUCKET_MINUTES)
    running = running_over_time(name, since=timedelta(hours=1))

    def frame(title: str) -> ChartFrame:
        return ChartFrame(title=title, label_time=label_time)

    # Safe: .charts escapes every text it writes into the SVG.
    return [
        mark_safe(
            stacked_bars(hour, keys=keys, frame=frame(gettext("Executions per minute, last hour")))
        ),
        mark_safe(
            stacked_bars(
                day,
                keys=keys,
                frame=frame(
                    gettext("Executions per %(minutes)d minutes, last day")
                    % {"minutes": DAY_BUCKET_MINUTES}
                ),
            )
        ),
        mark_safe(
            running_chart(
                running,
                limit=concurrency,
                frame=frame(gettext("Running at once (most per minute), last hour")),
                running_label=gettext("running"),
                limit_label=gettext("concurrency now"),
            )
        ),
    ]
