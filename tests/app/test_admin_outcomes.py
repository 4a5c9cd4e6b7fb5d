"""The admin's lists and pages: outcomes in words, filters, relative times, errors, links."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from django_planton.admin.display import ago, format_seconds, until
from django_planton.sql import read_database_now

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory

pytestmark = pytest.mark.django_db

TASKS_URL = "admin:django_planton_maintenancetask_changelist"
EXECUTIONS_URL = "admin:django_planton_maintenancetaskexecution_changelist"


def cell(content: str, field: str) -> list[str]:
    """The inner HTML of every cell of a changelist column."""
    return re.findall(rf'<td class="field-{field}">(.*?)</td>', content, re.DOTALL)


def one_of_each():
    """An execution of each outcome, the running one the oldest."""
    task = MaintenanceTaskFactory(nid="send_user_email")
    now = timezone.now()
    return {
        "running": MaintenanceTaskExecutionFactory(
            maintenance_task=task, started_at=now - timedelta(minutes=12)
        ),
        "succeeded": MaintenanceTaskExecutionFactory(maintenance_task=task, completed=True),
        "failed": MaintenanceTaskExecutionFactory(maintenance_task=task, failed=True),
        "terminated": MaintenanceTaskExecutionFactory(maintenance_task=task, terminated=True),
    }


# -- executions ----------------------------------------------------------------------


def test_each_execution_shows_its_outcome_in_words_with_an_icon_only_when_wrong(admin_client):
    executions = one_of_each()
    content = admin_client.get(reverse(EXECUTIONS_URL)).content.decode()

    cells = {
        re.search(r">\s*(\w+)</span>", outcome).group(1): outcome
        for outcome in cell(content, "outcome_display")
    }
    assert sorted(cells) == ["Failed", "Running", "Succeeded", "Terminated"]
    assert "icon-no.svg" in cells["Failed"]
    assert "icon-alert.svg" in cells["Terminated"]
    assert "<img" not in cells["Succeeded"]
    assert "<img" not in cells["Running"]
    # No boolean column any more: no tick nor cross on a healthy row.
    assert "icon-yes.svg" not in content
    assert len(executions) == 4


@pytest.mark.parametrize("outcome", ["running", "succeeded", "failed", "terminated"])
def test_the_outcome_filter_lists_exactly_the_executions_of_that_outcome(admin_client, outcome):
    executions = one_of_each()
    response = admin_client.get(reverse(EXECUTIONS_URL), {"outcome": outcome})
    assert [e.pk for e in response.context["cl"].result_list] == [executions[outcome].pk]


def test_running_executions_list_oldest_first(admin_client):
    task = MaintenanceTaskFactory()
    now = timezone.now()
    ages = [3, 12, 1, 7]
    started = {
        age: MaintenanceTaskExecutionFactory(
            maintenance_task=task, started_at=now - timedelta(minutes=age)
        )
        for age in ages
    }
    MaintenanceTaskExecutionFactory.create_batch(5, maintenance_task=task, completed=True)

    response = admin_client.get(reverse(EXECUTIONS_URL), {"outcome": "running"})

    listed = [e.pk for e in response.context["cl"].result_list]
    assert listed == [started[age].pk for age in sorted(ages, reverse=True)]
    content = response.content.decode()
    assert cell(content, "duration_display")[0] == '<em title="running for 12 min">12 min</em>'


def test_an_executions_page_is_titled_by_task_id_and_instruction(admin_client):
    task = MaintenanceTaskFactory(nid="send_user_email")
    execution = MaintenanceTaskExecutionFactory(maintenance_task=task, instruction="42")
    url = reverse("admin:django_planton_maintenancetaskexecution_change", args=[execution.pk])

    content = admin_client.get(url).content.decode()

    title = f"send_user_email #{execution.pk} (instruction 42)"
    assert f"<h1>{title}</h1>" in content
    assert f"&rsaquo; {title}" in content  # the breadcrumb
    assert f"{task.pk}:42" not in content


def test_times_show_to_the_second(admin_client, settings):
    settings.TIME_ZONE = "UTC"
    started = timezone.now().replace(hour=13, minute=4, second=5, microsecond=0)
    execution = MaintenanceTaskExecutionFactory(started_at=started, completed=True)
    content = admin_client.get(reverse(EXECUTIONS_URL)).content.decode()
    assert cell(content, "started_display") == [started.strftime("%Y-%m-%d 13:04:05")]
    page = admin_client.get(
        reverse("admin:django_planton_maintenancetaskexecution_change", args=[execution.pk])
    ).content.decode()
    assert started.strftime("%Y-%m-%d 13:04:06") in page  # ended a second later


# -- tasks ---------------------------------------------------------------------------


def test_a_task_without_error_shows_a_dash_and_one_with_an_error_its_first_line(admin_client):
    MaintenanceTaskFactory(nid="healthy")
    MaintenanceTaskFactory(
        nid="broken",
        last_error="OperationalError: deadlock detected\nDETAIL: process 12 waits",
        last_attempted_at=timezone.now() - timedelta(minutes=3),
    )
    content = admin_client.get(reverse(TASKS_URL)).content.decode()

    broken, healthy = cell(content, "last_error_cell")  # by name
    assert healthy == "\u2014"
    assert "icon-no.svg" in broken
    assert "OperationalError: deadlock detected" in broken
    assert "DETAIL" not in broken
    assert "3 min ago" in broken
    assert "icon-yes.svg" not in content


def test_next_attempts_and_dispatches_read_as_relative_times(admin_client):
    now = timezone.now()
    MaintenanceTaskFactory(nid="a-later", next_attempt_at=now + timedelta(seconds=42))
    late_task = MaintenanceTaskFactory(
        nid="b-late",
        next_attempt_at=now - timedelta(minutes=3, seconds=5),
        last_dispatched_at=now - timedelta(seconds=12),
    )
    MaintenanceTaskFactory(nid="c-paused", is_paused=True)

    content = admin_client.get(reverse(TASKS_URL)).content.decode()

    later, late, paused = cell(content, "next_attempt_display")
    assert re.search(r">in 4[01] s</time>", later)
    assert ">overdue by 3 min</time>" in late
    assert paused == "paused"
    page = admin_client.get(
        reverse("admin:django_planton_maintenancetask_change", args=[late_task.pk])
    ).content.decode()
    assert re.search(r"\d\d:\d\d:\d\d \(1[23] s ago\)", page)  # last dispatched
    assert re.search(r"\d\d:\d\d:\d\d \(overdue by 3 min\)", page)  # next attempt


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite's clock is this process's: no skew to show"
)
def test_relative_times_count_from_the_databases_clock_not_the_hosts(admin_client):
    database_now = read_database_now("default")
    MaintenanceTaskFactory(nid="due-soon", next_attempt_at=database_now + timedelta(minutes=5))
    # This host's clock runs a day behind the database's.
    with time_machine.travel(database_now - timedelta(days=1), tick=True):
        content = admin_client.get(reverse(TASKS_URL)).content.decode()
    [relative] = cell(content, "next_attempt_display")
    assert re.search(r">in [45] min</time>", relative)


def test_a_task_not_registered_in_the_code_is_marked(admin_client, make_task):
    make_task("registered_task")
    MaintenanceTaskFactory(nid="registered_task")
    MaintenanceTaskFactory(nid="renamed_task")

    content = admin_client.get(reverse(TASKS_URL)).content.decode()

    registered, renamed = re.findall(r'<th class="field-name_display">(.*?)</th>', content)
    assert "not registered" not in registered
    assert "renamed_task" in renamed
    assert "not registered" in renamed


def test_each_task_links_to_its_executions_and_its_failed_ones(admin_client):
    task = MaintenanceTaskFactory(nid="a-task")
    mine = MaintenanceTaskExecutionFactory(maintenance_task=task, failed=True)
    MaintenanceTaskExecutionFactory(maintenance_task=task, completed=True)
    MaintenanceTaskExecutionFactory(failed=True, maintenance_task__nid="b-other")

    content = admin_client.get(reverse(TASKS_URL)).content.decode()
    hrefs = re.findall(r'href="([^"]+)"', cell(content, "executions_links")[0])  # a-task's

    all_url, failed_url = (href.replace("&amp;", "&") for href in hrefs)
    assert len(admin_client.get(all_url).context["cl"].result_list) == 2
    assert [e.pk for e in admin_client.get(failed_url).context["cl"].result_list] == [mine.pk]


def test_a_tasks_page_shows_its_last_error_in_full_with_its_time(admin_client):
    attempted = timezone.now() - timedelta(seconds=30)
    error = "Traceback (most recent call last):\n  File 'x'\nValueError: <no> rows"
    task = MaintenanceTaskFactory(last_error=error, last_attempted_at=attempted)

    content = admin_client.get(
        reverse("admin:django_planton_maintenancetask_change", args=[task.pk])
    ).content.decode()

    assert "Traceback (most recent call last):\n  File &#x27;x&#x27;\nValueError: &lt;no&gt;" in (
        content
    )
    assert re.search(r"At \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((29|30|31) s ago\)", content)


# -- the relative forms --------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250 ms"), (12.9, "12 s"), (99, "99 s"), (185, "3 min"), (7500, "2 h 5 min")],
)
def test_spans_read_at_a_glance(seconds, text):
    assert format_seconds(seconds) == text


def test_until_and_ago_name_the_direction():
    now = timezone.now()
    assert until(now + timedelta(seconds=12), now) == "in 12 s"
    assert until(now - timedelta(minutes=3), now) == "overdue by 3 min"
    assert until(None, now) == "now"
    assert ago(now - timedelta(seconds=12), now) == "12 s ago"
    assert ago(now, now) == "just now"
