"""The dashboard and a task's activity: figures from django_planton.status, charts, access."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from ..factories import (
    MaintenanceTaskExecutionFactory,
    MaintenanceTaskFactory,
    RunnerProcessFactory,
)

pytestmark = pytest.mark.django_db

DASHBOARD_URL = "admin:django_planton_dashboard"


def task_page(task) -> str:
    return reverse("admin:django_planton_maintenancetask_change", args=[task.pk])


def row_of(content: str, name: str) -> str:
    """The dashboard's table row of one task."""
    for row in re.findall(r"<tr>(.*?)</tr>", content, re.DOTALL):
        if f">{name}</a>" in row:
            return row
    raise AssertionError(f"No row for {name}")


def runner_state(runners: str, hostname: str) -> str:
    """The text of the state cell of the runners' table row of ``hostname``."""
    for row in re.findall(r"<tr>(.*?)</tr>", runners, re.DOTALL):
        cells = re.findall(r"<td>(.*?)</td>", row, re.DOTALL)
        if cells and cells[0] == hostname:
            return re.sub(r"<[^>]+>", "", cells[2]).strip()
    raise AssertionError(f"No runner row for {hostname}")


@pytest.fixture
def busy_task(make_task):
    """A registered task: 2 of 3 slots taken, and an hour of every outcome."""
    make_task("send_user_email", concurrency=3)
    task = MaintenanceTaskFactory(
        nid="send_user_email",
        concurrency=3,
        last_error="ValueError: no such row",
        last_attempted_at=timezone.now() - timedelta(minutes=2),
    )
    now = timezone.now()
    MaintenanceTaskExecutionFactory.create_batch(2, maintenance_task=task)
    MaintenanceTaskExecutionFactory.create_batch(5, maintenance_task=task, completed=True)
    MaintenanceTaskExecutionFactory(maintenance_task=task, failed=True)
    MaintenanceTaskExecutionFactory(
        maintenance_task=task, terminated=True, started_at=now - timedelta(hours=3)
    )
    return task


def test_the_dashboard_shows_each_task_against_its_concurrency_with_counts(admin_client, busy_task):
    MaintenanceTaskFactory(nid="old_task")  # a row whose code is gone
    RunnerProcessFactory(hostname="web-1")
    RunnerProcessFactory(hostname="web-2", dead=True)

    content = admin_client.get(reverse(DASHBOARD_URL)).content.decode()

    row = row_of(content, "send_user_email")
    assert '<meter min="0" max="3" value="2"></meter> 2 / 3' in row
    hour, day = re.findall(r"<td>(.*?)</td>", row, re.DOTALL)[:2]
    assert ">2 running</a>" in hour
    assert ">5 succeeded</a>" in hour
    assert ">1 failed</a>" in hour
    assert "terminated" not in hour  # three hours ago
    assert ">1 terminated</a>" in day
    assert "ValueError: no such row" in row
    assert "2 min ago" in row
    failed_link = f"maintenance_task__id__exact={busy_task.pk}&amp;outcome=failed"
    assert f'{failed_link}">failed executions</a>' in row
    assert "not registered" not in row
    assert "not registered" in row_of(content, "old_task")
    runners = content[content.index('id="planton-runners"') :]
    assert runner_state(runners, "web-1") == "alive"
    assert runner_state(runners, "web-2") == "dead"
    assert "No run_planton process is alive" not in content


def test_the_dashboard_says_when_no_runner_is_alive(admin_client):
    RunnerProcessFactory(dead=True)
    content = admin_client.get(reverse(DASHBOARD_URL)).content.decode()
    assert "No run_planton process is alive: no task is being scheduled." in content


def test_the_dashboard_costs_the_same_queries_for_more_tasks(
    admin_client, django_assert_max_num_queries
):
    def add_tasks(start: int, count: int) -> None:
        for n in range(start, start + count):
            task = MaintenanceTaskFactory(nid=f"task-{n:02}")
            MaintenanceTaskExecutionFactory(maintenance_task=task, completed=True)
            MaintenanceTaskExecutionFactory(maintenance_task=task, failed=True)

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    add_tasks(0, 2)
    admin_client.get(reverse(DASHBOARD_URL))
    with CaptureQueriesContext(connection) as few:
        admin_client.get(reverse(DASHBOARD_URL))
    add_tasks(2, 10)
    with CaptureQueriesContext(connection) as many:
        content = admin_client.get(reverse(DASHBOARD_URL)).content.decode()
    assert len(many) == len(few)
    assert content.count("<meter") == 12


def test_staff_who_may_view_tasks_see_the_dashboard_and_others_may_not(client, django_user_model):
    user = django_user_model.objects.create_user(username="op", password="x", is_staff=True)
    client.force_login(user)
    assert client.get(reverse(DASHBOARD_URL)).status_code == 403
    user.user_permissions.add(
        Permission.objects.get(
            content_type__app_label="django_planton", codename="view_maintenancetask"
        )
    )
    assert client.get(reverse(DASHBOARD_URL)).status_code == 200


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get(reverse(DASHBOARD_URL))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_the_app_page_and_the_tasks_list_link_to_the_dashboard(admin_client):
    url = reverse(DASHBOARD_URL)
    for page in (
        reverse("admin:app_list", args=["django_planton"]),
        reverse("admin:django_planton_maintenancetask_changelist"),
    ):
        assert f'href="{url}"' in admin_client.get(page).content.decode()


def test_a_tasks_page_draws_its_three_charts_and_its_counts(admin_client, busy_task):
    content = admin_client.get(task_page(busy_task)).content.decode()

    activity = content[content.index('id="planton-activity"') :]
    charts = re.findall(r'<svg class="planton-chart".*?</svg>', activity, re.DOTALL)
    assert len(charts) == 3
    assert 'aria-label="Executions per minute, last hour"' in charts[0]
    assert 'aria-label="Executions per 10 minutes, last day"' in charts[1]
    assert "planton-limit" in charts[2]  # the concurrency line
    # The hour's chart has bars for this minute's executions: 2 running, 5, 1 failed.
    assert charts[0].count('class="planton-bar planton-succeeded"') >= 1
    assert charts[0].count('class="planton-bar planton-failed"') >= 1
    assert ">5 succeeded</a>" in activity
    assert "2 of 3 slots" in activity


def test_a_tasks_page_links_to_its_executions_and_the_preview(admin_client, busy_task):
    content = admin_client.get(task_page(busy_task)).content.decode()
    preview = reverse("admin:django_planton_maintenancetask_preview", args=[busy_task.pk])
    assert f'href="{preview}"' in content
    assert f"?maintenance_task__id__exact={busy_task.pk}" in content
