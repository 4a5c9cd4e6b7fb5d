"""The example site's ``clear_expired_sessions``: claimed by run_planton, done in db_worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from django_planton.contrib.tasks import DjangoTasks
from django_planton.registry import registry
from example_site.accounts import receivers
from example_site.accounts.tasks import SESSION_BATCH_SIZE, clear_expired_sessions

from .test_django_tasks import manage, query
from .test_example_site import context_for, dispatch, execution_for

pytestmark = pytest.mark.django_db(transaction=True)


def sessions(count: int, *, expired: bool, prefix: str) -> list[str]:
    when = timezone.now() + timedelta(days=-1 if expired else 1)
    made = [
        Session(session_key=f"{prefix}{n:05d}", session_data="e30=", expire_date=when)
        for n in range(count)
    ]
    Session.objects.bulk_create(made)
    return [session.session_key for session in made]


def test_it_runs_on_djangos_tasks_framework():
    assert isinstance(registry.executor_of("clear_expired_sessions"), DjangoTasks)
    assert clear_expired_sessions.concurrency == 2


def test_the_schedule_claims_batches_of_expired_sessions_only():
    expired = sessions(SESSION_BATCH_SIZE + 5, expired=True, prefix="a")
    sessions(3, expired=False, prefix="b")

    # A schedule runs inside the cycle's transaction (select_for_update needs one).
    with transaction.atomic():
        claimed = clear_expired_sessions.schedule(context_for(clear_expired_sessions, limit=2))

    assert claimed == [
        f"{expired[0]}..{expired[SESSION_BATCH_SIZE - 1]}",
        f"{expired[SESSION_BATCH_SIZE]}..{expired[-1]}",
    ]
    with transaction.atomic():
        again = clear_expired_sessions.schedule(
            context_for(clear_expired_sessions, limit=2, active=(claimed[0],))
        )
    assert again == [claimed[1]]  # an active batch is not claimed twice


def test_the_receiver_deletes_only_sessions_still_expired_and_completes():
    expired = sessions(4, expired=True, prefix="a")
    Session.objects.filter(session_key=expired[1]).update(
        expire_date=timezone.now() + timedelta(days=1)  # refreshed since the claim
    )
    execution = execution_for(clear_expired_sessions, f"{expired[0]}..{expired[-1]}")
    receivers.connect()

    dispatch(clear_expired_sessions, execution)

    assert list(Session.objects.values_list("session_key", flat=True)) == [expired[1]]
    execution.refresh_from_db()
    assert execution.ended_at is not None
    assert execution.error is None


def test_run_planton_then_db_worker_clears_them(subprocess_database_url):
    """The README's two commands, as real processes."""
    url = subprocess_database_url
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()
    for key in ("x0001", "x0002", "x0003"):
        query(
            url,
            "INSERT INTO django_session (session_key, session_data, expire_date) "
            "VALUES (%s, %s, %s)",
            (
                key,
                "e30=",
                yesterday if url.startswith("sqlite") else timezone.now() - timedelta(days=1),
            ),
        )

    planton = manage(url, "run_planton", "--once", "--task", "clear_expired_sessions")
    assert planton.returncode == 0, planton.stderr
    assert ": 1 dispatched, 0 succeeded, 0 failed, 0 terminated, 1 still running;" in planton.stdout
    assert len(query(url, "SELECT session_key FROM django_session")) == 3  # not yet

    worker = manage(url, "db_worker", "--batch", "--no-startup-delay")
    assert worker.returncode == 0, worker.stderr
    assert query(url, "SELECT session_key FROM django_session") == []
