"""Named states and bulk transitions of the two tables, as queryset methods."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import models, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q

from . import retries, signals
from .reconnect import retrying_lost_connections
from .sql import DatabaseNow, read_database_now
from .states import Outcome, describe_error, ended_values

if TYPE_CHECKING:
    # MaintenanceTask is used as a string type argument, which linters do not see.
    from .models import (  # noqa: F401
        FailingInstruction,
        MaintenanceTask,
        MaintenanceTaskExecution,
        RunnerProcess,
    )

__all__ = [
    "FailingInstructionQuerySet",
    "MaintenanceTaskExecutionQuerySet",
    "MaintenanceTaskQuerySet",
    "RunnerProcessQuerySet",
]


class MaintenanceTaskQuerySet(models.QuerySet["MaintenanceTask"]):
    def for_task(self, name: str) -> MaintenanceTaskQuerySet:
        return self.filter(nid=name)

    def paused(self) -> MaintenanceTaskQuerySet:
        return self.filter(is_paused=True)

    def active(self) -> MaintenanceTaskQuerySet:
        return self.filter(is_paused=False)

    def with_running_count(self) -> MaintenanceTaskQuerySet:
        """Each task with ``running_count``, how many of its executions run now."""
        running = models.Count("executions", filter=Q(executions__ended_at__isnull=True))
        return self.annotate(running_count=running)


class MaintenanceTaskExecutionQuerySet(models.QuerySet["MaintenanceTaskExecution"]):
    def running(self) -> MaintenanceTaskExecutionQuerySet:
        # ended_at IS NULL, not state = RUNNING: it is what the partial index covers.
        return self.filter(ended_at__isnull=True)

    def finished(self) -> MaintenanceTaskExecutionQuerySet:
        return self.filter(ended_at__isnull=False)

    def succeeded(self) -> MaintenanceTaskExecutionQuerySet:
        """Ended without an error and not terminated (outcome ``Succeeded``)."""
        return self.filter(ended_at__isnull=False, terminated_at__isnull=True, error__isnull=True)

    def failed(self) -> MaintenanceTaskExecutionQuerySet:
        """Ended with an error (``fail()``, or a receiver that raised), not terminated."""
        return self.filter(ended_at__isnull=False, terminated_at__isnull=True, error__isnull=False)

    def terminated(self) -> MaintenanceTaskExecutionQuerySet:
        """Ended by the runner or an operator (outcome ``Terminated``)."""
        return self.filter(terminated_at__isnull=False)

    def with_outcome(self, outcome: str) -> MaintenanceTaskExecutionQuerySet:
        """The executions of one :class:`~django_planton.states.Outcome` (its value)."""
        selectors = {
            Outcome.RUNNING: self.running,
            Outcome.SUCCEEDED: self.succeeded,
            Outcome.FAILED: self.failed,
            Outcome.TERMINATED: self.terminated,
        }
        return selectors[Outcome(outcome)]()

    def for_task(self, name: str) -> MaintenanceTaskExecutionQuerySet:
        return self.filter(maintenance_task__nid=name)

    def overdue(self, now: datetime | None = None) -> MaintenanceTaskExecutionQuerySet:
        """Running executions older than their task's maximum execution duration.

        ``now`` defaults to the database's clock, the one ``started_at`` was
        stamped by, so a host whose clock runs ahead ends nothing early.
        """
        deadline = ExpressionWrapper(
            F("started_at") + F("maintenance_task__maximum_execution_duration"),
            output_field=DateTimeField(),
        )
        cutoff = DatabaseNow() if now is None else now
        return self.running().alias(deadline=deadline).filter(deadline__lt=cutoff)

    def complete(self) -> int:
        """Complete the running executions of this queryset in one statement; returns how many.

        A lost connection is retried for a while (:mod:`django_planton.reconnect`).
        """
        return retrying_lost_connections(
            self.db, partial(self._end, error=None), what="Executions: complete()"
        )

    def fail(self, error: BaseException | str | dict[str, Any]) -> int:
        """Complete the running executions of this queryset, recording ``error``."""
        end = partial(self._end, error=describe_error(error))
        return retrying_lost_connections(self.db, end, what="Executions: fail()")

    def heartbeat(self) -> int:
        """Record that the running executions of this queryset are still being worked on."""
        return retrying_lost_connections(
            self.db,
            lambda: self.running().update(last_seen_at=DatabaseNow()),
            what="Executions: heartbeat()",
        )

    def _end(self, *, error: dict[str, Any] | None) -> int:
        # Pick the ids, then work on the executions table alone by primary
        # key: a FOR UPDATE over a join (for_task()) would also lock the
        # task's row, which a cycle in flight holds (see terminate()).
        ids = list(self.running().values_list("pk", flat=True))
        if not ids:
            return 0
        running = self.model.objects.using(self.db).filter(pk__in=ids).running()
        with transaction.atomic(using=self.db):
            # Which tasks to wake is only worth a query when a runner listens in
            # this process; on PostgreSQL a trigger notifies the other processes.
            task_ids: set[int] = set()
            if signals.executions_ended.has_listeners():
                task_ids = set(running.values_list("maintenance_task_id", flat=True).distinct())
            now = read_database_now(self.db)
            # The executions whose ending changes a failing instruction: every
            # failed one, and the successful retries.
            changing = running if error is not None else running.filter(attempt__gt=1)
            changed = list(changing.select_for_update())
            count = running.update(**ended_values(now, error=error))
            if error is None:
                retries.forget_failures(changed, using=self.db)
            else:
                retries.record_failures(changed, now, error, using=self.db)
        if count and task_ids:
            signals.announce_ended(task_ids, using=self.db)
        return count

    def terminate(self, reason: str) -> list[MaintenanceTaskExecution]:
        """End the running executions of this queryset as terminated.

        Returns the executions it ended; ``execution_terminated`` is sent for
        each of them once the transaction commits, so that an application can
        give their work back. Rows another process holds locked are left for
        a later round.
        """
        from .models import MaintenanceTask

        # Pick the ids first and lock in a second query on the executions
        # table alone: a FOR UPDATE over a join (select_related, or the
        # overdue() filter on the task's duration) would also need the task's
        # row, which a cycle in flight holds, and SKIP LOCKED would then skip
        # the execution. MariaDB has no FOR UPDATE OF to say which table.
        candidates = list(self.running().values_list("pk", flat=True))
        if not candidates:
            return []
        rows = self.model.objects.using(self.db)
        with transaction.atomic(using=self.db):
            ended = list(
                rows.filter(pk__in=candidates).running().select_for_update(skip_locked=True)
            )
            if not ended:
                return []
            now = read_database_now(self.db)
            fields = ended_values(now, terminated_reason=reason)
            rows.filter(pk__in=[execution.pk for execution in ended]).update(**fields)
            tasks = MaintenanceTask.objects.using(self.db).in_bulk(
                {execution.maintenance_task_id for execution in ended}
            )
            for execution in ended:
                for name, value in fields.items():
                    setattr(execution, name, value)
                execution.maintenance_task = tasks[execution.maintenance_task_id]
            # An instruction that keeps running past its limit is held back
            # like one that fails.
            terminated = {"type": "Terminated", "message": reason}
            retries.record_failures(ended, now, terminated, using=self.db)
            transaction.on_commit(lambda: signals.send_terminated(ended, reason), using=self.db)
        return ended


class FailingInstructionQuerySet(models.QuerySet["FailingInstruction"]):
    def given_up(self) -> FailingInstructionQuerySet:
        return self.filter(given_up_at__isnull=False)

    def held_back(self) -> FailingInstructionQuerySet:
        """Not given up, and still waiting out their retry delay (by the database's clock)."""
        return self.filter(given_up_at__isnull=True, retry_at__gt=DatabaseNow())

    def release(self) -> int:
        """Forget these failures: each instruction may be dispatched at the next attempt."""
        count, _ = self.delete()
        return count

    def give_up(self) -> int:
        """Give these instructions up until an operator releases them."""
        return self.filter(given_up_at__isnull=True).update(
            given_up_at=DatabaseNow(), retry_at=None
        )


class RunnerProcessQuerySet(models.QuerySet["RunnerProcess"]):
    def alive(self) -> RunnerProcessQuerySet:
        """Runners whose last heartbeat is recent enough, by the database's clock."""
        return self.filter(dead_after__gte=DatabaseNow())

    def dead(self) -> RunnerProcessQuerySet:
        """Runners not seen for three heartbeat intervals, by the database's clock."""
        return self.filter(dead_after__lt=DatabaseNow())
