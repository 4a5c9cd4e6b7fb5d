"""The accounts app's tasks, registered when ``AccountsConfig.ready()`` imports this module.

Two registration styles on purpose: ``send_user_email`` uses the decorator,
``purge_deleted_accounts`` builds a :class:`~django_planton.Task` and passes it
to :func:`django_planton.register`. Either way the module-level name is the
registered ``Task``, which the receivers use as their signal ``sender``.

A schedule only *claims* work: it runs inside the cycle's transaction, picks
rows nobody works on yet and returns their ids. The work itself happens in the
``task_dispatched`` receivers (:mod:`.receivers`), after the cycle committed.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import BigIntegerField, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone

import django_planton
from django_planton import ScheduleContext, Task, backoff
from django_planton.models import MaintenanceTaskExecution

from .models import UserAccount

#: At most this many welcome e-mails are on their way at once (the admin may override it).
SEND_EMAIL_CONCURRENCY: int = getattr(settings, "ACCOUNTS_SEND_EMAIL_CONCURRENCY", 10)

#: An account whose e-mail failed is not offered again for this long, so that a
#: broken mail server or a bad address does not turn the task into a busy loop:
#: a failed execution frees its slot at once and the task is woken right away.
RETRY_FAILED_AFTER = timedelta(seconds=30)

#: Accounts hard-deleted by one execution of the purge.
PURGE_BATCH_SIZE = 500


def _recently_failed(task_name: str) -> QuerySet:
    """Account ids (as a subquery) whose e-mail failed less than RETRY_FAILED_AFTER ago.

    The scheduler's executions table already records every failure, so the
    account model needs no retry bookkeeping of its own.
    """
    return (
        MaintenanceTaskExecution.objects.for_task(task_name)
        .failed()
        .filter(ended_at__gte=timezone.now() - RETRY_FAILED_AFTER)
        .annotate(account_id=Cast("instruction", BigIntegerField()))
        .values("account_id")
    )


@django_planton.task(
    name="send_user_email",
    concurrency=SEND_EMAIL_CONCURRENCY,
    # Right after a batch there is probably more: look again at once. When
    # nothing is owed, back off from half a second up to half a minute.
    calculate_delay=backoff.exponential(base=0.5, factor=2, maximum=30, after_work=0),
)
def send_user_email(context: ScheduleContext) -> list[int]:
    """Claim up to ``context.limit`` accounts still owed their welcome e-mail.

    Accounts whose e-mail is on its way (active instructions) are skipped, and
    so are rows another transaction holds locked (``skip_locked``): claiming
    never waits on anybody.
    """
    active = [int(instruction) for instruction in context.active_task_instructions]
    claimed = (
        UserAccount.objects.awaiting_email()
        .exclude(pk__in=active)
        .exclude(pk__in=_recently_failed(context.task_name))
        .select_for_update(skip_locked=True)
        .order_by("pk")
        .values_list("pk", flat=True)[: context.limit]
    )
    return list(claimed)


def claim_purgeable_accounts(context: ScheduleContext) -> list[str]:
    """Claim one batch of accounts soft-deleted long enough ago, as a single instruction.

    One execution per account would be wasteful for a bulk ``DELETE``, so the
    instruction names a range of ids, ``"<first>-<last>"``. The receiver deletes
    only the accounts of that range that are *still* purgeable, so an account
    restored in between, or a live one whose id falls inside the range, survives.
    """
    batch = list(
        UserAccount.objects.purgeable()
        .select_for_update(skip_locked=True)
        .order_by("pk")
        .values_list("pk", flat=True)[:PURGE_BATCH_SIZE]
    )
    if not batch:
        return []
    return [f"{batch[0]}-{batch[-1]}"]


def parse_id_range(instruction: str) -> tuple[int, int]:
    """The ``(first, last)`` ids of a purge instruction made by :func:`claim_purgeable_accounts`."""
    first, _, last = instruction.partition("-")
    return int(first), int(last)


purge_deleted_accounts = django_planton.register(
    Task(
        name="purge_deleted_accounts",
        schedule=claim_purgeable_accounts,
        # One purge at a time: batches of a bulk delete gain nothing from overlapping.
        concurrency=1,
        # Purging is never urgent: once the backlog is gone, look again a minute
        # later, then one more minute each time, up to once an hour.
        calculate_delay=backoff.linear(step=60, maximum=3600),
    )
)
