"""The Prometheus view: its figures equal the database's rows, and it is not open to all.

The output is parsed with prometheus_client's own parser; the expected
values come from the rows through the ORM.
"""

from __future__ import annotations

import importlib
import sys
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from django_planton.models import MaintenanceTask, MaintenanceTaskExecution, RunnerProcess
from django_planton.sql import read_database_now

from ..factories import (
    MaintenanceTaskExecutionFactory,
    MaintenanceTaskFactory,
    RunnerProcessFactory,
)

pytestmark = pytest.mark.django_db

URL = "/metrics"


def scrape(client, **headers) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    response = client.get(URL, headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        assert family.type == "gauge", family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def task_sample(samples, name, task, **labels):
    return samples[(name, tuple(sorted({"task": task, **labels}.items())))]


@pytest.fixture
def fleet(make_task):
    """Two tasks with executions of every outcome, an alive runner and a dead one."""
    now = read_database_now("default")
    RunnerProcessFactory()
    RunnerProcessFactory(dead=True)
    make_task("mailer")
    mailer = MaintenanceTaskFactory(
        nid="mailer",
        concurrency=2,
        maximum_concurrent_execution_count=7,
        attempt_number=4,
        next_attempt_at=now - timedelta(seconds=30),
        last_error="ValueError: boom",
    )
    purger = MaintenanceTaskFactory(nid="purger", is_paused=True)
    MaintenanceTaskExecutionFactory(maintenance_task=mailer, started_at=now - timedelta(minutes=9))
    for trait, minutes in [("completed", 5), ("completed", 50), ("failed", 7), ("terminated", 3)]:
        MaintenanceTaskExecutionFactory(
            maintenance_task=mailer, started_at=now - timedelta(minutes=minutes), **{trait: True}
        )
    MaintenanceTaskExecutionFactory(
        maintenance_task=mailer, completed=True, started_at=now - timedelta(hours=3)
    )
    MaintenanceTaskExecutionFactory(
        maintenance_task=purger, failed=True, started_at=now - timedelta(minutes=1)
    )
    return now


def test_metrics_equal_the_database_rows(fleet, admin_client):
    samples = scrape(admin_client)

    assert samples[("planton_runners_alive", ())] == RunnerProcess.objects.alive().count() == 1
    assert samples[("planton_runners_dead", ())] == RunnerProcess.objects.dead().count() == 1
    for task in MaintenanceTask.objects.all():
        executions = MaintenanceTaskExecution.objects.filter(maintenance_task=task)
        hour = executions.filter(started_at__gte=fleet - timedelta(hours=1))
        expected = {
            "planton_task_running": executions.running().count(),
            "planton_task_concurrency": task.effective_concurrency,
            "planton_task_attempt_number": task.attempt_number,
            "planton_task_paused": int(task.is_paused),
            "planton_task_last_attempt_failed": int(bool(task.last_error)),
            "planton_task_overdue_executions": executions.overdue().count(),
        }
        for name, value in expected.items():
            assert task_sample(samples, name, task.nid) == value, name
        for outcome in ("running", "succeeded", "failed", "terminated"):
            count = task_sample(samples, "planton_executions_last_hour", task.nid, outcome=outcome)
            assert count == hour.with_outcome(outcome).count(), outcome
    assert task_sample(samples, "planton_task_concurrency", "mailer") == 7
    assert task_sample(samples, "planton_task_registered", "mailer") == 1
    assert task_sample(samples, "planton_task_registered", "purger") == 0
    assert task_sample(samples, "planton_task_lag_seconds", "purger") == 0  # paused
    assert 30 <= task_sample(samples, "planton_task_lag_seconds", "mailer") < 40


def test_durations_are_the_p50_and_p95_of_the_last_day(fleet, admin_client):
    samples = scrape(admin_client)
    # mailer's ended executions of the last day, terminated aside, all took 1 s.
    durations = {
        (row.ended_at - row.started_at).total_seconds()
        for row in MaintenanceTaskExecution.objects.filter(
            maintenance_task__nid="mailer", terminated_at__isnull=True, ended_at__isnull=False
        )
    }
    assert durations == {1.0}
    for quantile in ("0.5", "0.95"):
        name = "planton_task_duration_seconds"
        assert task_sample(samples, name, "mailer", quantile=quantile) == 1.0


def test_each_scrape_reads_the_database_afresh(fleet, admin_client):
    before = task_sample(scrape(admin_client), "planton_task_running", "mailer")
    MaintenanceTaskExecutionFactory(maintenance_task=MaintenanceTask.objects.get(nid="mailer"))
    after = task_sample(scrape(admin_client), "planton_task_running", "mailer")
    assert after == before + 1


# -- who may scrape -------------------------------------------------------------------


def test_anonymous_and_non_staff_users_are_refused(client, django_user_model):
    assert client.get(URL).status_code == 403
    user = django_user_model.objects.create_user("viewer", password="x")
    client.force_login(user)
    assert client.get(URL).status_code == 403


def test_the_bearer_token_of_the_setting_is_let_in(client, settings):
    settings.PLANTON_METRICS_TOKEN = "s3cret"
    RunnerProcessFactory()
    samples = scrape(client, Authorization="Bearer s3cret")
    assert samples[("planton_runners_alive", ())] == 1
    assert client.get(URL, headers={"Authorization": "Bearer wrong"}).status_code == 403


def test_no_token_setting_lets_no_bearer_in(client, settings):
    settings.PLANTON_METRICS_TOKEN = ""
    assert client.get(URL, headers={"Authorization": "Bearer "}).status_code == 403


# -- the optional extra ---------------------------------------------------------------


def test_importing_without_prometheus_client_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "django_planton.contrib.prometheus", raising=False)
    with pytest.raises(ImportError, match=r"pip install django-planton\[prometheus\]"):
        importlib.import_module("django_planton.contrib.prometheus")
