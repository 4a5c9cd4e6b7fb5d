"""User accounts that get a welcome e-mail and, once deleted, are purged after a while."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

#: How long a soft-deleted account is kept (so it can be restored) before it is purged.
PURGE_AFTER = timedelta(days=14)


class UserAccountQuerySet(models.QuerySet["UserAccount"]):
    def alive(self) -> UserAccountQuerySet:
        """Accounts not soft-deleted."""
        return self.filter(deleted_at__isnull=True)

    def awaiting_email(self) -> UserAccountQuerySet:
        """Accounts still owed their welcome e-mail: the work of ``send_user_email``."""
        return self.alive().filter(email_sent_at__isnull=True)

    def purgeable(self, now: datetime | None = None) -> UserAccountQuerySet:
        """Accounts soft-deleted longer than :data:`PURGE_AFTER` ago: the work of the purge."""
        return self.filter(deleted_at__lt=(now or timezone.now()) - PURGE_AFTER)


class UserAccount(models.Model):
    email = models.EmailField(unique=True)
    email_sent_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the welcome e-mail went out; empty while it is still owed.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="Soft delete: the account is purged for good some days after this.",
    )

    objects = UserAccountQuerySet.as_manager()

    class Meta:
        ordering = ["pk"]
        indexes = [
            # The claim of send_user_email walks only the accounts still owed
            # an e-mail, not every account served so far (MariaDB ignores the
            # condition and keeps a plain index).
            models.Index(
                fields=["id"],
                condition=models.Q(email_sent_at__isnull=True, deleted_at__isnull=True),
                name="account_awaiting_email_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.email
