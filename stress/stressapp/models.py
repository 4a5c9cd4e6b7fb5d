"""What the runners leave behind for the stress run to count, across processes."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class ProbeEvent(models.Model):
    """One event seen in a runner process: a probe's attempt, a failed cycle, a termination.

    ``at`` is the database's time (the column's default), not the runner's:
    two of the runners run under a skewed clock.
    """

    class Kind(models.TextChoices):
        ATTEMPT = "attempt", "schedule called"
        SCHEDULE_FAILED = "schedule_failed", "schedule_failed received"
        TERMINATED = "terminated", "execution_terminated received"
        CUT_SHORT = "cut_short", "terminated while its receiver worked"
        LATE_START = "late_start", "receiver started for an ended execution"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    task_name = models.CharField(max_length=200)
    runner = models.CharField(max_length=100)
    at = models.DateTimeField(db_default=Now())
    detail = models.TextField(blank=True, default="")

    class Meta:
        db_table = "stress_probe_event"
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.kind} {self.task_name} {self.runner} {self.at.isoformat()}"
