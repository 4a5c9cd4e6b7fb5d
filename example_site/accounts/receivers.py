"""The work behind the accounts tasks: ``task_dispatched`` and ``execution_terminated`` receivers.

The scheduler sends ``task_dispatched`` once per claimed account, after the
cycle's transaction committed, with the RUNNING execution that stands for the
claim. A receiver must end that execution: complete it when the work is done,
fail it when it is not, so the slot frees up and the scheduler knows the
outcome. Connected by :func:`connect`, from ``AccountsConfig.ready()``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.sessions.models import Session
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from django_planton.models import MaintenanceTaskExecution
from django_planton.signals import execution_terminated, task_dispatched

from .models import PURGE_AFTER, UserAccount
from .tasks import (
    clear_expired_sessions,
    parse_id_range,
    parse_key_range,
    purge_deleted_accounts,
    send_user_email,
)

logger = logging.getLogger(__name__)

WELCOME_SUBJECT = "Welcome aboard"
WELCOME_MESSAGE = "Hello {email},\n\nyour account is ready.\n"


def connect() -> None:
    """Connect the receivers; the dispatch uids make a second call harmless."""
    task_dispatched.connect(
        deliver_welcome_email, sender=send_user_email, dispatch_uid="accounts.deliver_welcome"
    )
    task_dispatched.connect(
        purge_accounts, sender=purge_deleted_accounts, dispatch_uid="accounts.purge_accounts"
    )
    task_dispatched.connect(
        delete_expired_sessions,
        sender=clear_expired_sessions,
        dispatch_uid="accounts.delete_expired_sessions",
    )
    execution_terminated.connect(
        give_back_terminated_email,
        sender=send_user_email,
        dispatch_uid="accounts.give_back_terminated_email",
    )


def deliver_welcome_email(
    sender: Any, *, instruction: str, execution: MaintenanceTaskExecution, **kwargs: Any
) -> None:
    """Send the welcome e-mail of one claimed account, then record it and complete the execution.

    On any error the execution is failed and ``email_sent_at`` stays empty, so
    the account is offered again once the task's retry policy lets it
    (``context.held_back_instructions`` lists it until then).
    """
    account_id = int(instruction)
    try:
        sent = send_welcome_email(account_id)
    except Exception as error:
        logger.warning(
            "Welcome e-mail to account %s failed; it will be tried again later: %s",
            account_id,
            error,
            exc_info=error,
        )
        execution.fail(error)
        return
    # Delivery is at least once: should this transaction fail after the
    # e-mail went out, the account is e-mailed again later.
    with transaction.atomic():
        if sent:
            UserAccount.objects.filter(pk=account_id).update(email_sent_at=timezone.now())
        execution.complete()


def send_welcome_email(account_id: int) -> bool:
    """Send the e-mail unless the account was deleted or served since it was claimed.

    Returns whether an e-mail went out. No transaction is open meanwhile: a
    slow mail server must not hold database locks.
    """
    account = UserAccount.objects.awaiting_email().filter(pk=account_id).first()
    if account is None:
        return False
    send_mail(
        WELCOME_SUBJECT,
        WELCOME_MESSAGE.format(email=account.email),
        None,  # DEFAULT_FROM_EMAIL
        [account.email],
    )
    return True


def purge_accounts(
    sender: Any, *, instruction: str, execution: MaintenanceTaskExecution, **kwargs: Any
) -> None:
    """Hard-delete the accounts of one purge batch that are still purgeable.

    ``tracking()`` completes the execution when the block ends, or fails it
    with the block's exception (which the scheduler then logs).
    """
    with execution.tracking():
        first, last = parse_id_range(instruction)
        deleted, _ = UserAccount.objects.purgeable().filter(pk__range=(first, last)).delete()
        logger.info(
            "Purged %d account(s) deleted more than %d days ago.", deleted, PURGE_AFTER.days
        )


def delete_expired_sessions(
    sender: Any, *, instruction: str, execution: MaintenanceTaskExecution, **kwargs: Any
) -> None:
    """Delete the sessions of one batch that are still expired (in ``db_worker``'s process)."""
    with execution.tracking():
        first, last = parse_key_range(instruction)
        deleted, _ = Session.objects.filter(
            session_key__range=(first, last), expire_date__lt=timezone.now()
        ).delete()
        logger.info("Deleted %d expired session(s).", deleted)


def give_back_terminated_email(
    sender: Any, *, execution: MaintenanceTaskExecution, reason: str, **kwargs: Any
) -> None:
    """Log that an overrunning welcome e-mail's account goes back to the pool.

    Nothing to undo: ``email_sent_at`` is only set once the e-mail went out, so
    the account is still owed its e-mail, and now that its execution ended it
    is no longer active: the next cycle claims it again.
    """
    logger.warning(
        "Welcome e-mail to account %s gave up (%s); the account will be claimed again.",
        execution.instruction,
        reason,
    )
