"""``maintenance_task``: one row per registered task.

What an operator may steer (pause, a concurrency override, the maximum
execution duration) and the attempt state that the runners share, so that
several ``run_planton`` processes keep one cadence.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..querysets import MaintenanceTaskQuerySet

__all__ = ["MaintenanceTask"]


class MaintenanceTask(models.Model):
    """A registered task, its operator's settings and its shared attempt state."""

    nid = models.CharField(
        _("name"),
        max_length=200,
        unique=True,
        help_text=_("The name the task is registered under in code."),
    )
    maximum_execution_duration = models.DurationField(
        default=timedelta(minutes=5),
        help_text=_(
            "An execution still running after this long is ended by the runner "
            "(terminated) and execution_terminated is sent, so the work can be given back."
        ),
    )
    maximum_concurrent_execution_count = models.PositiveIntegerField(
        _("concurrency override"),
        default=0,
        help_text=_(
            "When above 0, replaces the concurrency declared in code: at most this many "
            "executions of the task run at once."
        ),
    )
    concurrency = models.PositiveIntegerField(
        _("declared concurrency"),
        default=1,
        editable=False,
        help_text=_("The concurrency declared in code, copied here by run_planton."),
    )
    is_paused = models.BooleanField(
        _("paused"),
        default=False,
        help_text=_("A paused task is not attempted; its running executions go on."),
    )
    attempt_number = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text=_("Attempts since the last one that dispatched instructions."),
    )
    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_(
            "When the task is next due. Empty means due now; set it to now to have the "
            "task attempted at once."
        ),
    )
    last_attempted_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_dispatched_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text=_("When the task last dispatched instructions."),
    )
    last_error = models.TextField(
        blank=True,
        default="",
        editable=False,
        help_text=_("The error of the last failed attempt, cleared by a successful one."),
    )
    saturated_active_count = models.PositiveIntegerField(
        _("waiting for a slot below"),
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "How many executions were active when the last attempt found no free slot; "
            "the task is due again as soon as fewer are. Empty when it found one."
        ),
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MaintenanceTaskQuerySet.as_manager()

    class Meta:
        db_table = "maintenance_task"
        ordering = ["nid"]
        verbose_name = _("maintenance task")
        verbose_name_plural = _("maintenance tasks")

    def __str__(self) -> str:
        return self.nid

    @property
    def effective_concurrency(self) -> int:
        """The override when one is set, else the concurrency declared in code."""
        return self.maximum_concurrent_execution_count or self.concurrency
