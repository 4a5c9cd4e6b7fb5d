"""The runners' admin page: every run_planton process, alive or dead, read-only."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from ..factories import RunnerProcessFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client, django_user_model):
    """Staff who may view runners, and no more."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_runnerprocess"))
    client.force_login(user)
    return client


def rows_of(html: str) -> list[str]:
    """The rows of the change list's table."""
    body = re.search(r'<table id="result_list">.*?<tbody>(.*?)</tbody>', html, flags=re.S)
    assert body is not None, html
    return re.findall(r"<tr[^>]*>.*?</tr>", body.group(1), flags=re.S)


def test_the_list_shows_runners_most_recent_first_dead_ones_with_an_icon(viewer):
    now = timezone.now()
    RunnerProcessFactory(
        hostname="old-box",
        pid=11,
        started_at=now - timedelta(hours=2),
        last_seen_at=now - timedelta(minutes=5),
        tasks=[{"name": "mail", "executor": "Threads(max_workers=None)", "in_process": True}],
        version="1.2.3",
    )
    RunnerProcessFactory(
        hostname="new-box",
        pid=22,
        started_at=now - timedelta(minutes=1),
        last_seen_at=now - timedelta(seconds=12),
        heartbeat_interval=5.0,
    )

    response = viewer.get(reverse("admin:django_planton_runnerprocess_changelist"))

    assert response.status_code == 200
    html = response.content.decode()
    first, second = rows_of(html)
    assert "new-box" in first
    assert "old-box" in second
    assert "alive" in first
    assert "icon-alert.svg" not in first
    assert "dead" in second
    assert "icon-alert.svg" in second
    assert re.search(r">1[23] s ago<", first), first  # last seen, by the database's clock
    assert "5 min ago" in second
    assert 'title="Threads(max_workers=None)">mail<' in second
    assert "1.2.3" in second


def test_runners_cannot_be_added_changed_or_deleted(viewer):
    runner = RunnerProcessFactory()
    page = viewer.get(reverse("admin:django_planton_runnerprocess_change", args=[runner.pk]))
    assert page.status_code == 200
    assert runner.hostname in page.content.decode()
    assert viewer.get(reverse("admin:django_planton_runnerprocess_add")).status_code == 403
    delete = reverse("admin:django_planton_runnerprocess_delete", args=[runner.pk])
    assert viewer.post(delete, {"post": "yes"}).status_code == 403
