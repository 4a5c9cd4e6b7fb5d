"""Tests of the example site's accounts app: its two tasks, their receivers and its commands.

They double as a check that the library is pleasant to use from an ordinary
app: schedules are called with a plain :class:`ScheduleContext`, receivers
through the real ``task_dispatched`` signal, and the end-to-end tests drive
the real :class:`~django_planton.runner.Runner`. The runner sends its signals
in ``transaction.on_commit``, so those tests need ``transaction=True``.
"""

from __future__ import annotations

import logging
import smtplib
from collections import Counter
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_planton import ScheduleContext, Task
from django_planton.models import (
    ExecutionState,
    FailingInstruction,
    MaintenanceTask,
    MaintenanceTaskExecution,
)
from django_planton.runner import Runner
from django_planton.signals import task_dispatched
from example_site.accounts import receivers
from example_site.accounts.models import UserAccount
from example_site.accounts.tasks import (
    parse_id_range,
    purge_deleted_accounts,
    send_user_email,
)

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory, UserAccountFactory


def context_for(task: Task, *, limit: int, active: tuple[str, ...] = ()) -> ScheduleContext:
    return ScheduleContext(
        task_name=task.name,
        active_task_instructions=active,
        concurrency=task.concurrency,
        limit=limit,
    )


def execution_for(task: Task, instruction: Any, **kwargs: Any) -> MaintenanceTaskExecution:
    return MaintenanceTaskExecutionFactory(
        maintenance_task__nid=task.name, instruction=str(instruction), **kwargs
    )


def dispatch(task: Task, execution: MaintenanceTaskExecution) -> None:
    """Send ``task_dispatched`` the way the runner does, to whatever the app connected."""
    task_dispatched.send(
        sender=task, task_name=task.name, instruction=execution.instruction, execution=execution
    )


def run_until(runner: Runner, done: Any, *, rounds: int = 50) -> int:
    """Call ``run_once`` until ``done()``; returns the rounds it took."""
    for round_number in range(1, rounds + 1):
        runner.run_once()
        if done():
            return round_number
    raise AssertionError(f"not done after {rounds} rounds")


# -- registration -----------------------------------------------------------------


def test_both_tasks_are_registered_by_the_app() -> None:
    from django_planton import registry

    assert registry.get("send_user_email") is send_user_email
    assert registry.get("purge_deleted_accounts") is purge_deleted_accounts
    assert send_user_email.concurrency == 10
    assert purge_deleted_accounts.concurrency == 1
    assert send_user_email.calculate_delay(0) == 0  # more work is likely: look again at once
    assert purge_deleted_accounts.calculate_delay(2) == 120


@pytest.mark.django_db
def test_the_migrations_match_the_model() -> None:
    call_command("makemigrations", "accounts", "--check", "--dry-run", stdout=StringIO())


# -- send_user_email: the schedule ------------------------------------------------------


@pytest.mark.django_db
def test_schedule_returns_at_most_limit_ids_in_order_and_skips_active_ones() -> None:
    first, second, third, fourth = UserAccountFactory.create_batch(4)
    UserAccountFactory(emailed=True)
    UserAccountFactory(deleted_at=timezone.now())

    claimed = send_user_email.schedule(
        context_for(send_user_email, limit=2, active=(str(first.pk),))
    )

    assert claimed == [second.pk, third.pk]
    everything = send_user_email.schedule(context_for(send_user_email, limit=10))
    assert everything == [first.pk, second.pk, third.pk, fourth.pk]


@pytest.mark.django_db
def test_schedule_leaves_out_held_back_accounts() -> None:
    held_back, active, fresh = UserAccountFactory.create_batch(3)
    context = ScheduleContext(
        task_name=send_user_email.name,
        active_task_instructions=(str(active.pk),),
        concurrency=send_user_email.concurrency,
        limit=10,
        held_back_instructions=(str(held_back.pk),),
    )

    assert send_user_email.schedule(context) == [fresh.pk]


# -- send_user_email: the receiver ------------------------------------------------------


@pytest.mark.django_db
def test_receiver_sends_the_email_records_it_and_completes_the_execution(
    mailoutbox: list[mail.EmailMessage],
) -> None:
    account = UserAccountFactory()
    execution = execution_for(send_user_email, account.pk)

    dispatch(send_user_email, execution)

    assert [message.to for message in mailoutbox] == [[account.email]]
    assert mailoutbox[0].subject == receivers.WELCOME_SUBJECT
    account.refresh_from_db()
    assert account.email_sent_at is not None
    execution.refresh_from_db()
    assert execution.state == ExecutionState.COMPLETED
    assert execution.ended_at is not None
    assert execution.error is None


@pytest.mark.django_db
def test_a_failing_send_fails_the_execution_and_leaves_the_account_owed(
    mailoutbox: list[mail.EmailMessage],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> int:
        raise smtplib.SMTPServerDisconnected("mail server went away")

    monkeypatch.setattr(receivers, "send_mail", refuse)
    account = UserAccountFactory()
    execution = execution_for(send_user_email, account.pk)

    with caplog.at_level(logging.WARNING, logger=receivers.logger.name):
        dispatch(send_user_email, execution)

    assert mailoutbox == []
    account.refresh_from_db()
    assert account.email_sent_at is None
    execution.refresh_from_db()
    assert execution.ended_at is not None
    assert execution.error["type"] == "SMTPServerDisconnected"
    assert "mail server went away" in execution.error["message"]
    assert "will be tried again" in caplog.text
    assert UserAccount.objects.awaiting_email().filter(pk=account.pk).exists()


@pytest.mark.django_db
def test_receiver_completes_without_sending_when_the_account_was_deleted_meanwhile(
    mailoutbox: list[mail.EmailMessage],
) -> None:
    account = UserAccountFactory(deleted_at=timezone.now())
    execution = execution_for(send_user_email, account.pk)

    dispatch(send_user_email, execution)

    assert mailoutbox == []
    execution.refresh_from_db()
    assert execution.ended_at is not None
    assert execution.error is None


@pytest.mark.django_db
def test_a_terminated_email_is_logged_as_given_back(
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    account = UserAccountFactory()
    execution_for(send_user_email, account.pk)
    execution_for(purge_deleted_accounts, "1-2")

    with (
        caplog.at_level(logging.WARNING, logger=receivers.logger.name),
        django_capture_on_commit_callbacks(execute=True),
    ):
        MaintenanceTaskExecution.objects.running().terminate("maximum execution duration exceeded")

    given_back = [r for r in caplog.records if r.name == receivers.logger.name]
    assert len(given_back) == 1
    assert f"account {account.pk} gave up" in given_back[0].getMessage()
    # Nothing was undone, nothing needed to be: the account is still owed its e-mail.
    assert UserAccount.objects.awaiting_email().filter(pk=account.pk).exists()


# -- purge_deleted_accounts -----------------------------------------------------------


@pytest.mark.django_db
def test_purge_schedule_claims_one_batch_of_long_deleted_accounts() -> None:
    first = UserAccountFactory(long_deleted=True)
    UserAccountFactory()
    UserAccountFactory(deleted_at=timezone.now() - timedelta(days=13))
    last = UserAccountFactory(long_deleted=True)

    claimed = purge_deleted_accounts.schedule(context_for(purge_deleted_accounts, limit=1))

    assert claimed == [f"{first.pk}-{last.pk}"]
    assert parse_id_range(claimed[0]) == (first.pk, last.pk)


@pytest.mark.django_db
def test_purge_schedule_finds_nothing_without_long_deleted_accounts() -> None:
    UserAccountFactory()
    UserAccountFactory(deleted_at=timezone.now() - timedelta(days=13))

    assert purge_deleted_accounts.schedule(context_for(purge_deleted_accounts, limit=1)) == []


@pytest.mark.django_db(transaction=True)
def test_purge_deletes_only_accounts_deleted_more_than_14_days_ago() -> None:
    old = UserAccountFactory.create_batch(3, long_deleted=True)
    # Live and recently deleted accounts whose ids fall inside the claimed range.
    alive = UserAccountFactory()
    recent = UserAccountFactory(deleted_at=timezone.now() - timedelta(days=13, hours=23))
    old.append(UserAccountFactory(long_deleted=True))

    run_until(
        Runner([purge_deleted_accounts], hostname="test-host"),
        lambda: not UserAccount.objects.purgeable().exists(),
    )

    assert set(UserAccount.objects.values_list("pk", flat=True)) == {alive.pk, recent.pk}
    execution = MaintenanceTaskExecution.objects.for_task(purge_deleted_accounts.name).get()
    assert execution.instruction == f"{old[0].pk}-{old[-1].pk}"
    assert execution.ended_at is not None
    assert execution.error is None


# -- end to end -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_runner_emails_every_account_exactly_once(
    mailoutbox: list[mail.EmailMessage],
) -> None:
    accounts = UserAccountFactory.create_batch(50)
    UserAccountFactory(emailed=True)
    UserAccountFactory(deleted_at=timezone.now())
    runner = Runner([send_user_email], hostname="test-host")

    rounds = run_until(runner, lambda: not UserAccount.objects.awaiting_email().exists())

    assert rounds == 5  # 50 accounts, 10 at a time
    recipients = Counter(address for message in mailoutbox for address in message.to)
    assert recipients == Counter({account.email: 1 for account in accounts})
    executions = MaintenanceTaskExecution.objects.for_task(send_user_email.name)
    assert executions.count() == 50
    assert not executions.running().exists()
    assert not executions.filter(error__isnull=False).exists()
    assert sorted(int(i) for i in executions.values_list("instruction", flat=True)) == sorted(
        account.pk for account in accounts
    )


@pytest.mark.django_db(transaction=True)
def test_a_failed_email_is_sent_again_after_its_retry_pause(
    mailoutbox: list[mail.EmailMessage], monkeypatch: pytest.MonkeyPatch
) -> None:
    account = UserAccountFactory()
    real_send_mail = receivers.send_mail
    monkeypatch.setattr(receivers, "send_mail", lambda *a, **k: 1 / 0)
    runner = Runner([send_user_email], hostname="test-host")

    runner.run_once()
    monkeypatch.setattr(receivers, "send_mail", real_send_mail)
    failing = FailingInstruction.objects.get()
    assert failing.instruction == str(account.pk)
    assert failing.failures == 1

    runner.run_once()  # held back: nothing is sent
    assert mailoutbox == []
    FailingInstruction.objects.update(retry_at=timezone.now() - timedelta(seconds=1))
    MaintenanceTask.objects.update(next_attempt_at=None)  # no need to wait out the back-off
    run_until(runner, lambda: not UserAccount.objects.awaiting_email().exists())
    assert not FailingInstruction.objects.exists()  # the retry succeeded

    assert [message.to for message in mailoutbox] == [[account.email]]
    executions = MaintenanceTaskExecution.objects.for_task(send_user_email.name)
    assert executions.filter(error__isnull=False).count() == 1
    assert executions.filter(error__isnull=True, ended_at__isnull=False).count() == 1


@pytest.mark.django_db(transaction=True)
def test_planton_demo_runs_until_all_work_is_done(mailoutbox: list[mail.EmailMessage]) -> None:
    call_command("seed_accounts", "--count", "30", "--deleted", "3", stdout=StringIO())
    out = StringIO()

    call_command("planton_demo", "--timeout", "60", stdout=out)

    output = out.getvalue()
    assert "30/30 e-mails sent, 0 running" in output
    assert "send_user_email: 30 instruction(s) dispatched, 30 completed, 0 failed" in output
    assert "purge_deleted_accounts: 1 instruction(s) dispatched, 1 completed" in output
    assert "3 deleted account(s) purged" in output
    assert "In-memory outbox: 30 message(s) to 30 different address(es)" in output
    assert "The e-mails' receivers ran in " in output
    assert "(Threads(max_workers=None)): up to 10 at once" in output
    assert len(mailoutbox) == 30
    assert not UserAccount.objects.awaiting_email().exists()

    # A second run on the same database reports its own work only.
    call_command("seed_accounts", "--count", "5", stdout=StringIO())
    again = StringIO()
    call_command("planton_demo", "--timeout", "60", stdout=again)
    assert "5/5 e-mails sent" in again.getvalue()
    assert "send_user_email: 5 instruction(s) dispatched, 5 completed" in again.getvalue()
    assert "In-memory outbox: 5 message(s)" in again.getvalue()


@pytest.mark.django_db(transaction=True)
def test_planton_demo_gives_up_after_its_timeout_and_says_why() -> None:
    call_command("seed_accounts", "--count", "3", stdout=StringIO())
    MaintenanceTaskFactory(nid=send_user_email.name, is_paused=True)
    out = StringIO()

    with pytest.raises(CommandError, match="Task send_user_email is paused"):
        call_command("planton_demo", "--timeout", "0.5", stdout=out)

    assert "send_user_email: 0 instruction(s) dispatched" in out.getvalue()
    assert UserAccount.objects.awaiting_email().count() == 3


@pytest.mark.django_db
def test_planton_demo_refuses_to_run_without_work() -> None:
    with pytest.raises(CommandError, match="seed_accounts"):
        call_command("planton_demo", stdout=StringIO())


# -- seed_accounts ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("count", ["0", "-3", "many", "1.5"])
def test_seed_accounts_rejects_a_bad_count(count: str) -> None:
    with pytest.raises(CommandError, match="--count"):
        call_command("seed_accounts", "--count", count, stdout=StringIO())
    assert not UserAccount.objects.exists()


@pytest.mark.django_db
def test_seed_accounts_creates_the_accounts_it_says() -> None:
    out = StringIO()

    call_command("seed_accounts", "--count", "7", "--deleted", "2", stdout=out)

    assert "Created 7 account(s) awaiting their welcome e-mail and 2 deleted" in out.getvalue()
    assert UserAccount.objects.awaiting_email().count() == 7
    assert UserAccount.objects.purgeable().count() == 2
    assert UserAccount.objects.count() == 9


@pytest.mark.django_db
def test_seed_accounts_adds_to_existing_accounts_or_replaces_them_with_reset() -> None:
    call_command("seed_accounts", "--count", "3", stdout=StringIO())
    call_command("seed_accounts", "--count", "4", stdout=StringIO())
    assert UserAccount.objects.count() == 7

    out = StringIO()
    call_command("seed_accounts", "--count", "2", "--reset", stdout=out)

    assert "Deleted 7 existing account(s)." in out.getvalue()
    assert UserAccount.objects.count() == 2


@pytest.mark.django_db
def test_seed_accounts_defaults_to_1000_accounts() -> None:
    call_command("seed_accounts", stdout=StringIO())

    assert UserAccount.objects.awaiting_email().count() == 1000
