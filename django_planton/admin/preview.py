"""The schedule's preview: what a task's schedule would return now, and the SQL it sent.

It runs the registered schedule as the next cycle would, in a transaction
that then rolls back (:func:`django_planton.runner.preview.preview_schedule`):
nothing is dispatched, no row it claimed stays changed or locked, the
task's attempt state is left alone. It still runs the application's code
against the database, so it needs the change permission on tasks, and runs
on a POST only (the button on a task's page, or the list's action).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext

from ..models import MaintenanceTask
from ..runner.preview import SchedulePreview, preview_schedule

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

__all__ = ["MAX_PREVIEWS", "preview_action", "preview_view"]

#: The most tasks the list's action previews at once: each runs its schedule.
MAX_PREVIEWS = 10


def preview_view(
    model_admin: ModelAdmin[MaintenanceTask], request: HttpRequest, object_id: str
) -> HttpResponse:
    """A task's preview page: a button on GET, the schedule's result on POST."""
    task = model_admin.get_object(request, unquote(object_id))
    if task is None:
        raise Http404(gettext("No maintenance task with this id."))
    if not model_admin.has_change_permission(request, task):
        raise PermissionDenied
    previews = [preview_schedule(task.nid)] if request.method == "POST" else []
    return _render(model_admin, request, [task], previews)


def preview_action(
    model_admin: ModelAdmin[MaintenanceTask],
    request: HttpRequest,
    queryset: QuerySet[MaintenanceTask],
) -> HttpResponse:
    """The list's action: the selected tasks' previews, on one page."""
    tasks = list(queryset.order_by("nid")[: MAX_PREVIEWS + 1])
    left_out = len(tasks) > MAX_PREVIEWS
    tasks = tasks[:MAX_PREVIEWS]
    return _render(
        model_admin, request, tasks, [preview_schedule(task.nid) for task in tasks], left_out
    )


def _render(
    model_admin: ModelAdmin[MaintenanceTask],
    request: HttpRequest,
    tasks: list[MaintenanceTask],
    previews: list[SchedulePreview],
    left_out: bool = False,
) -> TemplateResponse:
    opts = model_admin.opts
    title = (
        gettext("Preview of %(task)s's schedule") % {"task": tasks[0].nid}
        if len(tasks) == 1
        else gettext("Preview of the selected tasks' schedules")
    )
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": opts,
        "app_label": opts.app_label,
        "tasks": tasks,
        "task": tasks[0] if len(tasks) == 1 else None,
        "results": [(task, preview) for task, preview in zip(tasks, previews, strict=False)],
        "ran": bool(previews),
        "left_out": left_out,
        "max_previews": MAX_PREVIEWS,
    }
    return TemplateResponse(request, "admin/django_planton/preview.html", context)
