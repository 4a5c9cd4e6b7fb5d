"""``planton_runner``: one row per live ``run_planton`` process, kept by its heartbeat."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from ..querysets import RunnerProcessQuerySet

__all__ = ["RunnerProcess"]


class RunnerProcess(models.Model):
    """One ``run_planton`` process, written when it starts and kept fresh by its heartbeat.

    The times come from the database's clock. ``dead_after`` is computed in
    the heartbeat's own statement (``last_seen_at`` plus three intervals), so
    that every reader can tell a dead runner with one comparison against the
    database's clock, whatever the clocks of the hosts. A clean stop deletes
    the row; a dead runner's row stays a while so that operators see it, and
    is then pruned by housekeeping.
    """

    hostname = models.CharField(max_length=255, help_text=_("The host the runner runs on."))
    pid = models.PositiveIntegerField(_("PID"), help_text=_("The runner's process id."))
    started_at = models.DateTimeField(help_text=_("When the runner started."))
    last_seen_at = models.DateTimeField(help_text=_("The runner's last heartbeat."))
    heartbeat_interval = models.FloatField(help_text=_("Seconds between two heartbeats."))
    dead_after = models.DateTimeField(
        help_text=_("Without a heartbeat by then (three intervals), the runner is dead.")
    )
    tasks = models.JSONField(
        default=list,
        blank=True,
        help_text=_("The tasks the runner runs, each with its executor."),
    )
    version = models.CharField(
        max_length=64, blank=True, default="", help_text=_("The runner's django-planton version.")
    )

    objects = RunnerProcessQuerySet.as_manager()

    class Meta:
        db_table = "planton_runner"
        ordering = ["-started_at", "-id"]
        verbose_name = _("runner")
        verbose_name_plural = _("runners")
        indexes = [models.Index(fields=["dead_after"], name="planton_runner_dead_after_idx")]

    def __str__(self) -> str:
        return self.identity

    @property
    def identity(self) -> str:
        """``host:pid``, the name the runner leaves on the executions it dispatches."""
        return self.identity_of(self.hostname, self.pid)

    @staticmethod
    def identity_of(hostname: str, pid: int) -> str:
        """``host:pid``: what the ``hostname`` column of a runner's executions holds."""
        return f"{hostname}:{pid}"
