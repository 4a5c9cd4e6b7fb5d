"""``python manage.py seed_accounts``: fill the accounts table with work for the scheduler."""

from __future__ import annotations

import argparse
import secrets
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from ...models import PURGE_AFTER, UserAccount

BATCH_SIZE = 500


def _whole_number(value: str, *, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < minimum:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least {minimum}")
    return number


def at_least_one(value: str) -> int:
    """An argparse type: a whole number of 1 or more, so a typo fails before any write."""
    return _whole_number(value, minimum=1)


def zero_or_more(value: str) -> int:
    """An argparse type: a whole number of 0 or more."""
    return _whole_number(value, minimum=0)


class Command(BaseCommand):
    help = (
        "Create user accounts still owed their welcome e-mail (and, with --deleted, accounts "
        "soft-deleted long enough ago to be purged)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--count",
            type=at_least_one,
            default=1000,
            help="Accounts to create that await their welcome e-mail (default 1000).",
        )
        parser.add_argument(
            "--deleted",
            type=zero_or_more,
            default=0,
            metavar="K",
            help=f"Also create K accounts soft-deleted more than {PURGE_AFTER.days} days ago, "
            "for purge_deleted_accounts (default 0).",
        )
        parser.add_argument(
            "--reset", action="store_true", help="Delete every existing account first."
        )

    def handle(self, *, count: int, deleted: int, reset: bool, **options: Any) -> None:
        # A tag per run keeps the e-mails unique when seeding an already seeded table.
        tag = secrets.token_hex(3)
        now = timezone.now()
        long_ago = now - PURGE_AFTER * 2
        awaiting = [
            UserAccount(email=f"user{number}.{tag}@example.com", created_at=now)
            for number in range(1, count + 1)
        ]
        gone = [
            UserAccount(
                email=f"deleted{number}.{tag}@example.com",
                created_at=long_ago - timedelta(days=30),
                email_sent_at=long_ago - timedelta(days=30),
                deleted_at=long_ago,
            )
            for number in range(1, deleted + 1)
        ]
        with transaction.atomic():
            removed = UserAccount.objects.all().delete()[0] if reset else 0
            UserAccount.objects.bulk_create([*awaiting, *gone], batch_size=BATCH_SIZE)
        if reset:
            self.stdout.write(f"Deleted {removed} existing account(s).")
        message = f"Created {count} account(s) awaiting their welcome e-mail"
        if deleted:
            message += f" and {deleted} deleted {PURGE_AFTER.days * 2} days ago"
        self.stdout.write(self.style.SUCCESS(message + "."))
