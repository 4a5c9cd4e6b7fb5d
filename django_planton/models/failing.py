"""``maintenance_task_failing_instruction``: what a retry policy holds back."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from ..querysets import FailingInstructionQuerySet
from .tasks import MaintenanceTask

__all__ = ["FailingInstruction"]


class FailingInstruction(models.Model):
    """An instruction whose last execution failed, held back by its task's retry policy.

    Written in the transaction that ends the failed execution, deleted in the
    one that completes a retry of it (or by an operator's "retry now"). A
    given-up instruction stays until an operator releases it. Pruning old
    executions leaves these rows alone: they are the failure history a
    retry policy needs.
    """

    maintenance_task = models.ForeignKey(
        MaintenanceTask,
        on_delete=models.CASCADE,  # by Django: there is no constraint in the database
        related_name="failing_instructions",
        verbose_name=_("task"),
        # A foreign-key check locks the task's row (KEY SHARE on PostgreSQL, a
        # shared lock on InnoDB), which a cycle in flight holds FOR UPDATE:
        # fail() would wait for the cycle, and deadlock with a schedule that
        # waits on a row the failing worker holds.
        db_constraint=False,
    )
    instruction = models.TextField()
    failures = models.PositiveIntegerField(
        _("failures in a row"), help_text=_("Failed executions since the last success.")
    )
    last_failed_at = models.DateTimeField()
    retry_at = models.DateTimeField(
        _("held back until"),
        null=True,
        blank=True,
        help_text=_("Not dispatched before this time. Empty when given up."),
    )
    given_up_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Not dispatched again until an operator releases it (retry now)."),
    )
    last_error = models.JSONField(null=True, blank=True)

    objects = FailingInstructionQuerySet.as_manager()

    class Meta:
        db_table = "maintenance_task_failing_instruction"
        ordering = ["maintenance_task", "-last_failed_at"]
        verbose_name = _("failing instruction")
        verbose_name_plural = _("failing instructions")

    def __str__(self) -> str:
        return f"{self.maintenance_task_id}:{self.instruction}"

    @property
    def is_given_up(self) -> bool:
        return self.given_up_at is not None
