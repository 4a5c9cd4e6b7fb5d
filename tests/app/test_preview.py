"""The schedule's preview: it runs the schedule as a cycle would, then rolls everything back."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import DatabaseError, connection, connections, transaction
from django.urls import reverse
from django.utils import timezone

from django_planton import signals
from django_planton.models import MaintenanceTask, MaintenanceTaskExecution
from django_planton.runner.preview import preview_schedule
from example_site.accounts.models import UserAccount

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory, UserAccountFactory

TASKS_URL = "admin:django_planton_maintenancetask_changelist"


def preview_url(task: MaintenanceTask) -> str:
    return reverse("admin:django_planton_maintenancetask_preview", args=[task.pk])


def claim_and_mark(context):
    """Claims accounts owed an e-mail as the README's schedule does, and marks them."""
    ids = list(
        UserAccount.objects.filter(email_sent_at__isnull=True)
        .exclude(pk__in=[int(i) for i in context.active_task_instructions])
        .select_for_update(skip_locked=True)
        .order_by("pk")
        .values_list("pk", flat=True)[: context.limit]
    )
    UserAccount.objects.filter(pk__in=ids).update(email_sent_at=timezone.now())
    return ids


@pytest.fixture
def claiming_task(make_task):
    """A registered task of concurrency 3, one instruction running, attempted a while ago."""
    make_task("send_user_email", claim_and_mark, concurrency=3)
    task = MaintenanceTaskFactory(
        nid="send_user_email",
        concurrency=3,
        attempt_number=4,
        next_attempt_at=timezone.now() + timedelta(minutes=5),
        last_attempted_at=timezone.now() - timedelta(minutes=1),
    )
    accounts = UserAccountFactory.create_batch(4)
    MaintenanceTaskExecutionFactory(maintenance_task=task, instruction=str(accounts[0].pk))
    return task, accounts


def attempt_state(task: MaintenanceTask) -> tuple:
    task.refresh_from_db()
    return (
        task.attempt_number,
        task.next_attempt_at,
        task.last_attempted_at,
        task.last_dispatched_at,
        task.last_error,
        task.updated_at,
    )


def not_locked_elsewhere(pks: list[int]) -> bool:
    """Whether another connection can lock these rows at once (NOWAIT)."""
    outcome: list[bool] = []

    def try_lock() -> None:
        try:
            with transaction.atomic():
                list(UserAccount.objects.filter(pk__in=pks).select_for_update(nowait=True))
            outcome.append(True)
        except DatabaseError:
            outcome.append(False)
        finally:
            connections.close_all()

    thread = threading.Thread(target=try_lock)
    thread.start()
    thread.join(30)
    return outcome == [True]


@pytest.mark.django_db(transaction=True)
def test_a_preview_shows_what_the_schedule_would_return_and_leaves_everything_as_it_was(
    claiming_task, record_signal
):
    task, accounts = claiming_task
    before = attempt_state(task)
    sent = [
        record_signal(signal)
        for signal in (signals.task_dispatched, signals.batch_dispatched, signals.schedule_failed)
    ]

    preview = preview_schedule("send_user_email")

    # The context the runner would give: 1 of 3 slots taken, so a limit of 2.
    assert (preview.concurrency, preview.limit, preview.attempt_number) == (3, 2, 4)
    assert preview.active == (str(accounts[0].pk),)
    assert preview.instructions == (str(accounts[1].pk), str(accounts[2].pk))
    assert preview.errors == ()
    statements = [statement.sql for statement in preview.statements]
    assert len(statements) == 2
    assert statements[0].startswith("SELECT")
    assert ("FOR UPDATE" in statements[0]) is connection.features.has_select_for_update
    assert statements[1].startswith("UPDATE")
    assert not any("SAVEPOINT" in sql for sql in statements)
    # Rolled back: the claimed rows unchanged and unlocked, nothing written, nothing sent.
    assert UserAccount.objects.filter(email_sent_at__isnull=False).count() == 0
    if connection.vendor != "sqlite":  # SQLite has no row locks
        assert not_locked_elsewhere([account.pk for account in accounts])
    assert MaintenanceTaskExecution.objects.count() == 1
    assert attempt_state(task) == before
    assert all(not log.items for log in sent)


@pytest.mark.django_db
def test_the_preview_page_runs_the_schedule_on_post_only(admin_client, claiming_task):
    task, accounts = claiming_task

    page = admin_client.get(preview_url(task)).content.decode()
    assert "Run the schedule now (rolled back)" in page
    assert "SQL statement" not in page

    page = admin_client.post(preview_url(task)).content.decode()
    assert "It would dispatch 2 instructions now:" in page
    assert f"<li><code>{accounts[1].pk}</code></li>" in page
    assert "2 SQL statements" in page
    assert '<pre class="planton-sql">SELECT' in page
    assert UserAccount.objects.filter(email_sent_at__isnull=False).count() == 0


@pytest.mark.django_db
def test_a_schedule_that_raises_shows_its_traceback_and_is_not_recorded(
    admin_client, make_task, record_signal
):
    def broken(context):
        raise LookupError("the <orders> table is gone")

    make_task("broken_task", broken)
    task = MaintenanceTaskFactory(nid="broken_task")
    before = attempt_state(task)
    failed = record_signal(signals.schedule_failed)

    page = admin_client.post(preview_url(task)).content.decode()

    assert "The schedule failed" in page
    assert "Traceback (most recent call last)" in page
    assert "LookupError: the &lt;orders&gt; table is gone" in page
    assert attempt_state(task) == before
    assert not failed.items


@pytest.mark.django_db
def test_an_unregistered_task_is_explained(admin_client):
    task = MaintenanceTaskFactory(nid="renamed_task")
    page = admin_client.post(preview_url(task)).content.decode()
    assert "Task &#x27;renamed_task&#x27; is not registered in this process" in page


@pytest.mark.django_db
def test_a_task_with_every_slot_taken_is_not_scheduled(admin_client, make_task):
    calls = []
    make_task("full_task", lambda context: calls.append(context) or [], concurrency=1)
    task = MaintenanceTaskFactory(nid="full_task")
    MaintenanceTaskExecutionFactory(maintenance_task=task)

    page = admin_client.post(preview_url(task)).content.decode()

    assert "Every slot is taken: a cycle would not call the schedule now." in page
    assert calls == []


@pytest.mark.django_db
def test_the_action_previews_each_selected_task(admin_client, claiming_task, make_task):
    task, _accounts = claiming_task
    make_task("quiet_task")
    quiet = MaintenanceTaskFactory(nid="quiet_task")

    response = admin_client.post(
        reverse(TASKS_URL),
        {"action": "preview_schedule", "_selected_action": [task.pk, quiet.pk], "index": "0"},
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert f'id="preview-{task.pk}"' in page
    assert f'id="preview-{quiet.pk}"' in page
    assert "It would dispatch 2 instructions now:" in page
    assert "It would dispatch 0 instructions now:" in page
    assert UserAccount.objects.filter(email_sent_at__isnull=False).count() == 0


@pytest.mark.django_db
def test_the_preview_needs_the_change_permission(client, django_user_model, claiming_task):
    task, _accounts = claiming_task
    user = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(
            content_type__app_label="django_planton", codename="view_maintenancetask"
        )
    )
    client.force_login(user)

    assert client.get(preview_url(task)).status_code == 403
    assert client.post(preview_url(task)).status_code == 403
    page = client.get(reverse("admin:django_planton_maintenancetask_change", args=[task.pk]))
    assert preview_url(task) not in page.content.decode()
    actions = client.get(reverse(TASKS_URL)).context["action_form"]
    assert actions is None or "preview_schedule" not in dict(actions.fields["action"].choices)


@pytest.mark.skipif(not connection.features.has_select_for_update, reason="no row locks")
@pytest.mark.django_db(transaction=True)
def test_a_task_whose_cycle_runs_now_is_left_to_its_runner(claiming_task):
    """A runner holds the task's row: the preview runs nothing and says why."""
    task, _accounts = claiming_task
    locked, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:
        try:
            with transaction.atomic():
                list(MaintenanceTask.objects.filter(pk=task.pk).select_for_update())
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    try:
        assert locked.wait(30)
        preview = preview_schedule(task.nid)
    finally:
        release.set()
        holder.join(30)

    assert preview.problem.startswith("A runner is attempting task 'send_user_email' right now")
    assert preview.statements == ()
    assert UserAccount.objects.filter(email_sent_at__isnull=False).count() == 0


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="a statement limit: PostgreSQL and MariaDB only"
)
@pytest.mark.django_db(transaction=True)
def test_a_schedule_whose_statement_runs_long_fails_in_the_page_not_the_request(
    make_task, monkeypatch
):
    from django_planton.runner import preview as preview_module

    monkeypatch.setattr(preview_module, "PREVIEW_STATEMENT_TIMEOUT", 0.5)
    sleep = {"postgresql": "SELECT pg_sleep(5)", "mysql": "SELECT SLEEP(5)"}[connection.vendor]
    show = {
        "postgresql": "SHOW statement_timeout",
        "mysql": "SELECT @@SESSION.max_statement_time",
    }[connection.vendor]

    def slow(context):
        with connection.cursor() as cursor:
            cursor.execute(sleep)
        return []

    make_task("slow_scan", slow)
    MaintenanceTaskFactory(nid="slow_scan")
    with connection.cursor() as cursor:
        cursor.execute(show)
        before = cursor.fetchone()[0]

    started = time.monotonic()
    preview = preview_schedule("slow_scan")
    took = time.monotonic() - started

    assert took < 4, took
    if connection.vendor == "postgresql":
        [error] = preview.errors
        assert "statement timeout" in error
    else:
        # MariaDB ends SLEEP() early and returns 1 rather than failing: the
        # schedule then returns nothing.
        assert preview.errors or preview.instructions == ()
    with connection.cursor() as cursor:
        cursor.execute(show)
        assert cursor.fetchone()[0] == before  # the request's connection is as it was
