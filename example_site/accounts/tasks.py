"""The accounts app's tasks, registered when ``AccountsConfig.ready()`` imports this module.

Two registration styles on purpose: ``send_user_email`` uses the decorator,
``purge_deleted_accounts`` builds a :class:`~django_planton.Task` and passes it
to :func:`django_planton.register`. Three executors too: the e-mails run in
``run_planton``'s threads (the default, ``Threads``), the purge as well, and
``clear_expired_sessions`` runs its receiver on Django's tasks framework
(``DjangoTasks``), in ``python manage.py db_worker``. Either way the module-level name is the
registered ``Task``, which the receivers use as their signal ``sender``.

A schedule only *claims* work: it runs inside the cycle's transaction, picks
rows nobody works on yet and returns their ids. The work itself happens in the
``task_dispatched`` receivers (:mod:`.receivers`), after the cycle committed.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

import django_planton
from django_planton import ScheduleContext, Task, backoff
from django_planton.contrib.tasks import DjangoTasks

from .models import UserAccount

#: At most this many welcome e-mails are on their way at once (the admin may override it).
SEND_EMAIL_CONCURRENCY: int = getattr(settings, "ACCOUNTS_SEND_EMAIL_CONCURRENCY", 10)

#: Accounts hard-deleted by one execution of the purge.
PURGE_BATCH_SIZE = 500


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
    so are those whose last e-mail failed and that the task's retry policy
    holds back (by default 10 s after the first failure, doubling up to an
    hour), and rows another transaction holds locked (``skip_locked``):
    claiming never waits on anybody.
    """
    skipped = [*context.active_task_instructions, *context.held_back_instructions]
    claimed = (
        UserAccount.objects.awaiting_email()
        .exclude(pk__in=[int(instruction) for instruction in skipped])
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


#: Expired sessions deleted by one execution: a receiver deletes one batch.
SESSION_BATCH_SIZE = 200


@django_planton.task(
    name="clear_expired_sessions",
    concurrency=2,
    # Expired sessions pile up slowly: once none are left, look again a
    # minute later, then one more minute each time, up to once an hour.
    calculate_delay=backoff.linear(step=60, maximum=3600, after_work=0),
    # The receiver runs in `python manage.py db_worker`, not in run_planton.
    executor=DjangoTasks(),
)
def clear_expired_sessions(context: ScheduleContext) -> list[str]:
    """Claim batches of expired sessions, one instruction per batch: ``"<first key>..<last key>"``.

    Sessions are keyed by strings; the receiver deletes the expired sessions
    between the two keys, so a session refreshed in between survives.
    """
    keys = list(
        Session.objects.filter(expire_date__lt=timezone.now())
        .select_for_update(skip_locked=True)
        .order_by("session_key")
        .values_list("session_key", flat=True)[: SESSION_BATCH_SIZE * context.limit]
    )
    batches = [keys[i : i + SESSION_BATCH_SIZE] for i in range(0, len(keys), SESSION_BATCH_SIZE)]
    active = set(context.active_task_instructions)
    claimed = [f"{batch[0]}..{batch[-1]}" for batch in batches]
    return [instruction for instruction in claimed if instruction not in active][: context.limit]


def parse_key_range(instruction: str) -> tuple[str, str]:
    """The first and last session keys of an instruction of :func:`clear_expired_sessions`."""
    first, _, last = instruction.partition("..")
    return first, last
