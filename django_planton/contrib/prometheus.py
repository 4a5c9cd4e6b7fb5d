"""Prometheus metrics of the whole fleet, read from the database (``django-planton[prometheus]``).

Route :func:`metrics` in the project's urls; Prometheus scrapes it with a
bearer token (the setting ``PLANTON_METRICS_TOKEN``), and a logged-in staff
user may open it in a browser. Every figure comes from
:func:`django_planton.status.fleet_status` at scrape time, so any web
process reports every runner and every task, whichever process ran them.

They are all gauges, counts over the last hour included: the executions
table is pruned (``PLANTON_KEEP_COMPLETED_EXECUTIONS``) and several web
processes answer scrapes, so no process holds a total that only grows,
which a Prometheus counter must be. ``increase()`` has nothing to work on;
the hour's counts are read as they are.

:class:`FleetCollector` is a plain collector: register it in a registry of
your own (``REGISTRY.register(FleetCollector())``) to serve the figures
beside your other metrics instead.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily, Metric
except ImportError as error:
    raise ImportError(
        "django_planton.contrib.prometheus needs prometheus_client: "
        "pip install django-planton[prometheus]"
    ) from error

from ..states import Outcome
from ..status import FleetStatus, TaskStatus, fleet_status

__all__ = ["TOKEN_SETTING", "FleetCollector", "metrics"]

#: The setting holding the bearer token that Prometheus sends.
TOKEN_SETTING = "PLANTON_METRICS_TOKEN"

_QUANTILES = (("0.5", "p50_seconds"), ("0.95", "p95_seconds"))


class FleetCollector:
    """Collects the fleet's figures from the database each time it is scraped."""

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        self.using = using

    def collect(self) -> Iterator[Metric]:
        status = fleet_status(using=self.using)
        yield from runner_metrics(status)
        yield from task_metrics(status.tasks)


def runner_metrics(status: FleetStatus) -> Iterator[Metric]:
    alive = sum(runner.alive for runner in status.runners)
    yield GaugeMetricFamily(
        "planton_runners_alive", "run_planton processes whose heartbeat is recent.", value=alive
    )
    yield GaugeMetricFamily(
        "planton_runners_dead",
        "run_planton processes not seen for three heartbeat intervals, not yet pruned.",
        value=len(status.runners) - alive,
    )


def _per_task(name: str, documentation: str, tasks: list[TaskStatus], value: str) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=["task"])
    for task in tasks:
        family.add_metric([task.name], float(getattr(task, value)))
    return family


def task_metrics(tasks: list[TaskStatus]) -> Iterator[Metric]:
    yield _per_task("planton_task_running", "Executions running now.", tasks, "running")
    yield _per_task(
        "planton_task_concurrency",
        "Effective concurrency: the override when set, else the code's.",
        tasks,
        "concurrency",
    )
    yield _per_task(
        "planton_task_lag_seconds",
        "Seconds past due by the database's clock; 0 when not due, paused or full.",
        tasks,
        "lag_seconds",
    )
    yield _per_task(
        "planton_task_attempt_number",
        "Attempts since the last one that dispatched instructions.",
        tasks,
        "attempt_number",
    )
    yield _per_task("planton_task_paused", "1 when the task is paused.", tasks, "paused")
    yield _per_task(
        "planton_task_registered",
        "1 when the web process's code registers the task (0: a row left behind).",
        tasks,
        "registered",
    )
    yield _per_task(
        "planton_task_overdue_executions",
        "Executions running past the task's maximum execution duration.",
        tasks,
        "overdue_running",
    )
    failed = GaugeMetricFamily(
        "planton_task_last_attempt_failed", "1 when the last attempt failed.", labels=["task"]
    )
    for task in tasks:
        failed.add_metric([task.name], 1.0 if task.last_error else 0.0)
    yield failed
    yield _executions_last_hour(tasks)
    yield _durations(tasks)


def _executions_last_hour(tasks: list[TaskStatus]) -> Metric:
    family = GaugeMetricFamily(
        "planton_executions_last_hour",
        "Executions dispatched in the last hour, by what became of them.",
        labels=["task", "outcome"],
    )
    for task in tasks:
        for outcome in Outcome:
            family.add_metric([task.name, outcome.value], getattr(task.last_hour, outcome.value))
    return family


def _durations(tasks: list[TaskStatus]) -> Metric:
    family = GaugeMetricFamily(
        "planton_task_duration_seconds",
        "p50 and p95 of the durations of the executions that ended in the last day.",
        labels=["task", "quantile"],
    )
    for task in tasks:
        for quantile, field in _QUANTILES:
            seconds = getattr(task, field)
            if seconds is not None:
                family.add_metric([task.name, quantile], seconds)
    return family


def allowed(request: HttpRequest) -> bool:
    """A request bearing the token of ``PLANTON_METRICS_TOKEN``, or from a logged-in staff user."""
    token = getattr(settings, TOKEN_SETTING, None)
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").encode(), str(token).encode())
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def metrics(request: HttpRequest, using: str = DEFAULT_DB_ALIAS) -> HttpResponse:
    """The fleet's figures in Prometheus' text format; 403 unless :func:`allowed`.

    A registry of its own per request: the figures are read afresh from
    the database, and nothing global is left behind in the web process.
    """
    if not allowed(request):
        return HttpResponseForbidden("A bearer token or a staff login is required.\n")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(using))
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
