"""factory-boy factories for the models of django-planton."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from django_planton.models import (
    ExecutionState,
    MaintenanceTask,
    MaintenanceTaskExecution,
    RunnerProcess,
)


class MaintenanceTaskFactory(factory.django.DjangoModelFactory):
    """A ``maintenance_task`` row, as ``run_planton`` creates it for a registered task."""

    class Meta:
        model = MaintenanceTask
        django_get_or_create = ("nid",)

    nid = factory.Sequence(lambda n: f"task-{n}")
    concurrency = 1
    maximum_concurrent_execution_count = 0
    maximum_execution_duration = timedelta(minutes=5)
    is_paused = False


class MaintenanceTaskExecutionFactory(factory.django.DjangoModelFactory):
    """A RUNNING execution, started now; traits for the ended ones."""

    class Meta:
        model = MaintenanceTaskExecution

    class Params:
        completed = factory.Trait(
            state=ExecutionState.COMPLETED,
            ended_at=factory.LazyAttribute(lambda o: o.started_at + timedelta(seconds=1)),
        )
        failed = factory.Trait(
            state=ExecutionState.COMPLETED,
            ended_at=factory.LazyAttribute(lambda o: o.started_at + timedelta(seconds=1)),
            error={"type": "ValueError", "message": "boom"},
        )
        terminated = factory.Trait(
            state=ExecutionState.COMPLETED,
            ended_at=factory.LazyAttribute(lambda o: o.started_at + timedelta(seconds=1)),
            terminated_at=factory.SelfAttribute("ended_at"),
            terminated_reason="maximum execution duration exceeded",
        )

    maintenance_task = factory.SubFactory(MaintenanceTaskFactory)
    instruction = factory.Sequence(lambda n: f"instruction-{n}")
    started_at = factory.LazyFunction(timezone.now)
    hostname = "test-host"
    state = ExecutionState.RUNNING


class UserAccountFactory(factory.django.DjangoModelFactory):
    """An account of the example site still owed its welcome e-mail; traits for the others."""

    class Meta:
        model = "accounts.UserAccount"

    class Params:
        emailed = factory.Trait(email_sent_at=factory.LazyFunction(timezone.now))
        # Soft-deleted long enough ago for purge_deleted_accounts (14 days).
        long_deleted = factory.Trait(
            deleted_at=factory.LazyFunction(lambda: timezone.now() - timedelta(days=30))
        )

    email = factory.Sequence(lambda n: f"user{n}@example.com")


class RunnerProcessFactory(factory.django.DjangoModelFactory):
    """An alive ``run_planton`` process, seen now; the ``dead`` trait for one seen long ago."""

    class Meta:
        model = RunnerProcess

    class Params:
        dead = factory.Trait(
            last_seen_at=factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=2)),
        )

    hostname = "test-host"
    pid = factory.Sequence(lambda n: 10_000 + n)
    started_at = factory.LazyAttribute(lambda o: o.last_seen_at - timedelta(minutes=10))
    last_seen_at = factory.LazyFunction(timezone.now)
    heartbeat_interval = 5.0
    dead_after = factory.LazyAttribute(
        lambda o: o.last_seen_at + timedelta(seconds=3 * o.heartbeat_interval)
    )
    tasks = factory.LazyFunction(lambda: [{"name": "task-0", "executor": "Inline"}])
    version = "0.1.0"
