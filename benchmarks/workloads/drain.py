"""Workload 1: dispatch and complete ``accounts`` instructions as fast as the runner can.

One task, ``send_user_email``'s claim, concurrency 50, no delay after a
cycle that found work. The ``receiver`` parameter picks what is done with
each instruction (see the README's variants): ``single`` (mark the account
and complete, per instruction), ``batch`` (the whole batch in two
statements) or ``complete-only`` (the schedule marks, the receiver only
completes: like for like with the psycopg baseline).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from benchmarks.checks import already_ended_problems, finished_problems
from benchmarks.protocol import Result
from django_planton import ScheduleContext, Task
from django_planton.contrib.tasks import DjangoTasks
from django_planton.executors import Executor, Inline, Threads
from django_planton.models import MaintenanceTaskExecution
from django_planton.registry import registry
from django_planton.runner import Runner
from django_planton.signals import batch_dispatched, task_dispatched
from example_site.accounts.models import UserAccount
from example_site.accounts.tasks import send_user_email

from .common import Params, Progress, drain_delay, drain_result, email_task
from .hooks import maybe_profile
from .meters import Meter, counting, peak_rss_mb
from .tables import drained_problems, reset_tables

Receiver = Callable[..., None]


def per_instruction_receiver(progress: Progress) -> Receiver:
    """The example's ``deliver_welcome_email`` minus reading the address and sending the mail."""

    def receiver(sender: Any, *, instruction: str, execution: Any, **kwargs: Any) -> None:
        with transaction.atomic():
            UserAccount.objects.filter(pk=int(instruction)).update(email_sent_at=timezone.now())
            ended = execution.complete()
        progress.add(int(ended), 1)

    return receiver


def complete_only_receiver(progress: Progress) -> Receiver:
    """Only ``execution.complete()``: the schedule marked the account, as the baseline does."""

    def receiver(sender: Any, *, instruction: str, execution: Any, **kwargs: Any) -> None:
        progress.add(int(execution.complete()), 1)

    return receiver


def sleeping_receiver(progress: Progress, seconds: float, *, marks: bool = True) -> Receiver:
    """Waits ``seconds`` (a mail server's answer), then ends its execution.

    ``marks``: then marks the account and completes, in a transaction (the
    per-instruction receiver); else only completes (the schedule marked the
    account, :func:`claim_and_mark`).
    """
    work = per_instruction_receiver(progress) if marks else complete_only_receiver(progress)

    def receiver(sender: Any, **kwargs: Any) -> None:
        time.sleep(seconds)
        work(sender, **kwargs)

    return receiver


def batch_receiver(progress: Progress) -> Receiver:
    """The whole batch at once: one UPDATE of the accounts, one bulk ``complete()``."""

    def receiver(sender: Any, *, executions: list[Any], **kwargs: Any) -> None:
        account_ids = [int(execution.instruction) for execution in executions]
        with transaction.atomic():
            UserAccount.objects.filter(pk__in=account_ids).update(email_sent_at=timezone.now())
            ended = MaintenanceTaskExecution.objects.filter(
                pk__in=[execution.pk for execution in executions]
            ).complete()
        progress.add(ended, len(executions))

    return receiver


def claim_and_mark(context: ScheduleContext) -> list[str | int]:
    """``send_user_email``'s claim, then mark the claimed accounts in the same transaction.

    What the baseline's claiming statement does; lets a receiver do nothing
    but complete, so that the two compare like for like.
    """
    claimed = list(send_user_email.schedule(context))
    if claimed:
        UserAccount.objects.filter(pk__in=claimed).update(email_sent_at=timezone.now())
    return claimed


#: The executors a drain may name (``executor`` parameter); none: the default (Threads).
EXECUTORS: dict[str, Callable[[], Executor]] = {
    "inline": Inline,
    "threads": Threads,
    "django-tasks": DjangoTasks,
}
#: db_worker processes of the DjangoTasks drain.
WORKERS = 2


def register_worker_task(concurrency: int, work_ms: int, receiver: str) -> Task:
    """In a db_worker: the drained task and its receiver, as the drain registered them."""
    task = drain_task(receiver, concurrency, Progress(0), work_ms=work_ms)
    registry.register(task)
    return task


def start_workers(concurrency: int, work_ms: int, receiver: str) -> list[subprocess.Popen[bytes]]:
    """The db_worker processes that run the receivers of the DjangoTasks drain."""
    env = {**os.environ, "PLANTON_BENCH_WORKER": f"{concurrency}:{work_ms}:{receiver}"}
    command = [sys.executable, "-m", "django", "db_worker", "--interval", "0.01"]
    command += ["--no-startup-delay"]
    return [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
        for _ in range(WORKERS)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def wait_ended(task_name: str, accounts: int, timeout: float) -> bool:
    """Until ``accounts`` executions of the task have ended (their receivers ran elsewhere)."""
    ended = MaintenanceTaskExecution.objects.for_task(task_name).finished()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ended.count() >= accounts:
            return True
        time.sleep(0.05)
    return False


def drain_task(
    receiver: str, concurrency: int, progress: Progress, *, executor: str = "", work_ms: int = 0
) -> Task:
    """The drained task, with the variant's schedule, executor and receiver connected."""
    task = email_task("bench_drain", concurrency=concurrency, calculate_delay=drain_delay)
    if executor:
        registry.register(task, executor=EXECUTORS[executor]())
    if receiver in ("sleep", "sleep-complete"):
        marks = receiver == "sleep"
        if not marks:
            task = dataclasses.replace(task, schedule=claim_and_mark)
        receiver_function = sleeping_receiver(progress, work_ms / 1000, marks=marks)
        task_dispatched.connect(receiver_function, sender=task, weak=False)
    elif receiver == "batch":
        batch_dispatched.connect(batch_receiver(progress), sender=task, weak=False)
    elif receiver == "complete-only":
        task = dataclasses.replace(task, schedule=claim_and_mark)
        task_dispatched.connect(complete_only_receiver(progress), sender=task, weak=False)
    else:
        task_dispatched.connect(per_instruction_receiver(progress), sender=task, weak=False)
    return task


def run(params: Params) -> Result:
    """Drain, from ``Runner.start()`` to the last completion; then check the tables."""
    accounts, concurrency, timeout = params["accounts"], params["concurrency"], params["timeout"]
    counter = counting()
    profiles = maybe_profile()
    reset_tables(accounts)
    progress = Progress(accounts)
    task = drain_task(
        params["receiver"],
        concurrency,
        progress,
        executor=params.get("executor", ""),
        work_ms=int(params.get("work_ms", 0)),
    )
    runner = Runner([task], around_attempt=profiles.around_attempt if profiles else None)
    elsewhere = params.get("executor") == "django-tasks"  # the receivers run in db_workers
    workers = (
        start_workers(concurrency, int(params.get("work_ms", 0)), params["receiver"])
        if elsewhere
        else []
    )
    meter = Meter(counter)
    meter.start()
    runner.start()
    if elsewhere:
        finished = wait_ended(task.name, accounts, timeout)
    else:
        finished = progress.done.wait(timeout)
    meter.stop()
    stop_workers(workers)
    peak = peak_rss_mb()
    runner.stop(timeout=30)
    if profiles:
        profiles.dump()
    problems = finished_problems(finished, timeout)
    problems += already_ended_problems(progress.not_ended)
    problems += drained_problems(task.name, accounts, concurrency)
    return drain_result(accounts, meter, meter.queries, peak_rss_mb=peak, problems=problems)
