"""The measured runs, one per child process: ``python -m benchmarks.workloads NAME JSON``.

Each run resets the tables, measures, checks its result against the database
and prints one ``BENCHMARK-RESULT {json}`` line for the orchestrator. A fresh
process per run keeps the peak memory (``ru_maxrss``) and the warm caches of
one run out of the next.

The benchmark tasks are the example site's ``send_user_email`` under other
names: the same schedule function on the same ``accounts_useraccount`` table,
with the concurrency and delays each workload asks for, and receivers of the
benchmark's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .harness import (
    Meter,
    QueryCounter,
    check_drained,
    close_connection,
    emit,
    maybe_profile,
    peak_rss_mb,
    reset_tables,
    setup_django,
    total,
    vendor,
)


class Progress:
    """Counts ended executions and wakes the main thread once ``target`` is reached."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.ended = 0
        self.not_ended = 0
        self._lock = threading.Lock()
        self.done = threading.Event()
        if target == 0:
            self.done.set()

    def add(self, ended: int, expected: int) -> None:
        with self._lock:
            self.ended += ended
            self.not_ended += expected - ended
            if self.ended >= self.target:
                self.done.set()


class CallCounter:
    """A schedule that finds nothing and counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, context: Any) -> list[str]:
        with self._lock:
            self.calls += 1
        return []


def _drain_delay(attempt_number: int) -> float:
    # 0 s after a cycle that found work, 5 ms after an empty one.
    return 0.0 if attempt_number == 0 else 0.005


def _one_second(attempt_number: int) -> float:
    return 1.0


def _email_task(name: str, *, concurrency: int, calculate_delay: Callable[[int], float]) -> Any:
    from django_planton import Task
    from example_site.accounts.tasks import send_user_email

    return Task(
        name=name,
        schedule=send_user_email.schedule,
        concurrency=concurrency,
        calculate_delay=calculate_delay,
    )


# -- 1. drain ----------------------------------------------------------------


def per_instruction_receiver(progress: Progress) -> Callable[..., None]:
    """The example's ``deliver_welcome_email`` minus reading the address and sending the mail."""
    from django.db import transaction
    from django.utils import timezone

    from example_site.accounts.models import UserAccount

    def receiver(sender: Any, *, instruction: str, execution: Any, **kwargs: Any) -> None:
        with transaction.atomic():
            UserAccount.objects.filter(pk=int(instruction)).update(email_sent_at=timezone.now())
            ended = execution.complete()
        progress.add(int(ended), 1)

    return receiver


def complete_only_receiver(progress: Progress) -> Callable[..., None]:
    """Only ``execution.complete()``: the schedule marked the account, as the baseline does."""

    def receiver(sender: Any, *, instruction: str, execution: Any, **kwargs: Any) -> None:
        progress.add(int(execution.complete()), 1)

    return receiver


def claim_and_mark(context: Any) -> list[int]:
    """``send_user_email``'s claim, then mark the claimed accounts in the same transaction.

    What the baseline's claiming statement does; lets a receiver do nothing
    but complete, so that the two compare like for like.
    """
    from django.utils import timezone

    from example_site.accounts.models import UserAccount
    from example_site.accounts.tasks import send_user_email

    claimed = send_user_email.schedule(context)
    if claimed:
        UserAccount.objects.filter(pk__in=claimed).update(email_sent_at=timezone.now())
    return claimed


def batch_receiver(progress: Progress) -> Callable[..., None]:
    """The whole batch at once: one UPDATE of the accounts, one bulk ``complete()``."""
    from django.db import transaction
    from django.utils import timezone

    from django_planton.models import MaintenanceTaskExecution
    from example_site.accounts.models import UserAccount

    def receiver(sender: Any, *, executions: list[Any], **kwargs: Any) -> None:
        account_ids = [int(execution.instruction) for execution in executions]
        with transaction.atomic():
            UserAccount.objects.filter(pk__in=account_ids).update(email_sent_at=timezone.now())
            ended = MaintenanceTaskExecution.objects.filter(
                pk__in=[execution.pk for execution in executions]
            ).complete()
        progress.add(ended, len(executions))

    return receiver


def drain(params: dict[str, Any]) -> dict[str, Any]:
    """Workload 1: dispatch and complete ``accounts`` instructions as fast as the runner can."""
    from django_planton.runner import Runner
    from django_planton.signals import batch_dispatched, task_dispatched

    accounts = params["accounts"]
    counter = QueryCounter()
    counter.install()
    profiles = maybe_profile()
    reset_tables(accounts)

    receiver = params["receiver"]
    task = _email_task(
        "bench_drain", concurrency=params["concurrency"], calculate_delay=_drain_delay
    )
    if receiver == "complete-only":
        task = dataclasses.replace(task, schedule=claim_and_mark)
    progress = Progress(accounts)
    if receiver == "batch":
        batch_dispatched.connect(batch_receiver(progress), sender=task, weak=False)
    elif receiver == "complete-only":
        task_dispatched.connect(complete_only_receiver(progress), sender=task, weak=False)
    else:
        task_dispatched.connect(per_instruction_receiver(progress), sender=task, weak=False)

    runner = Runner([task])
    meter = Meter(counter)
    meter.start()
    runner.start()
    finished = progress.done.wait(params["timeout"])
    meter.stop()
    peak = peak_rss_mb()
    runner.stop(timeout=30)
    if profiles:
        profiles.dump()

    problems = [] if finished else [f"not drained within {params['timeout']} s"]
    if progress.not_ended:
        problems.append(f"{progress.not_ended} execution(s) were already ended when completed")
    problems += check_drained(task.name, accounts, params["concurrency"])
    return {
        "instructions": accounts,
        "wall": meter.wall,
        "cpu": meter.cpu,
        "threads": meter.threads,
        "queries": dict(meter.queries),
        "query_total": total(meter.queries),
        "peak_rss_mb": peak,
        "problems": problems,
    }


# -- 2. the hand-written psycopg loop ------------------------------------------

# What a plain psycopg connection needs of Django's connection parameters.
CONNINFO_KEYS = {"dbname", "user", "password", "host", "port", "sslmode"}

ACTIVE_SQL = (
    "SELECT instruction FROM maintenance_task_execution "
    "WHERE maintenance_task_id = %s AND ended_at IS NULL"
)
# send_user_email's filter: owed an e-mail, not deleted, not an active instruction
# (less its exclusion of accounts whose e-mail failed lately: none fails here).
_OWED = """
        SELECT id FROM accounts_useraccount
         WHERE email_sent_at IS NULL AND deleted_at IS NULL AND id <> ALL(%(active)s)
         ORDER BY id LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED"""
_INSERT_EXECUTIONS = """
INSERT INTO maintenance_task_execution
       (maintenance_task_id, instruction, started_at, hostname, state, created_at)
SELECT %(task_id)s, claimed.id::text, now(), 'benchmark', 'RUNNING', now() FROM claimed
RETURNING id, instruction
"""
# Claim and mark the accounts, and insert their executions, in one statement.
CLAIM_AND_MARK_SQL = (
    "WITH claimed AS (\n    UPDATE accounts_useraccount SET email_sent_at = now()\n"
    f"     WHERE id IN ({_OWED})\n    RETURNING id\n)" + _INSERT_EXECUTIONS
)
# Claim the accounts without marking them (an account claimed is excluded from
# the next claim while its execution is active), and insert their executions.
CLAIM_SQL = f"WITH claimed AS ({_OWED}\n)" + _INSERT_EXECUTIONS
MARK_SQL = "UPDATE accounts_useraccount SET email_sent_at = now() WHERE id = %s"
COMPLETE_SQL = (
    "UPDATE maintenance_task_execution SET state = 'COMPLETED', ended_at = now(), "
    "last_seen_at = now() WHERE id = %s AND ended_at IS NULL"
)


def baseline(params: dict[str, Any]) -> dict[str, Any]:
    """The tightest loop by hand: one psycopg connection, autocommit, psycopg's defaults.

    Per cycle: read the active instructions; claim up to ``limit`` accounts
    and insert their executions in one statement; then, per execution:

    - ``mark="claim"`` (default): the claiming statement also marked the
      accounts, so one UPDATE completes the execution;
    - ``mark="receiver"``: what the per-instruction receiver does, in one
      transaction per execution: mark its account, complete it.

    Same tables (and so the same trigger and indexes) as django-planton.
    psycopg's automatic server-side prepared statements are off: after five
    executions PostgreSQL may switch to a generic plan, and the generic plan
    of the completing UPDATE kept scanning the partial index of running
    executions, dead entries included, so the loop slowed down as the table
    filled (1,340 instead of 3,650 instructions/s over 20,000 accounts).
    Django does not prepare either (client-side binding).
    """
    import psycopg
    from django.db import connection

    from django_planton import Task
    from django_planton.runner import sync_tasks

    accounts = params["accounts"]
    concurrency = params["concurrency"]
    mark = params.get("mark", "claim")
    if mark not in ("claim", "receiver"):
        raise ValueError(f"mark must be 'claim' or 'receiver', not {mark!r}")
    claim_sql = CLAIM_AND_MARK_SQL if mark == "claim" else CLAIM_SQL
    reset_tables(accounts)
    task = Task(name="bench_baseline", schedule=lambda context: [], concurrency=concurrency)
    (task_id,) = sync_tasks([task]).keys()
    conninfo = connection.get_connection_params()
    close_connection()

    statements = 0  # BEGIN and COMMIT not counted, as for Django on PostgreSQL
    meter = Meter()
    with psycopg.connect(
        **{k: v for k, v in conninfo.items() if k in CONNINFO_KEYS},
        autocommit=True,
        prepare_threshold=None,
    ) as conn:
        meter.start()
        while True:
            active = [row[0] for row in conn.execute(ACTIVE_SQL, [task_id])]
            statements += 1
            limit = concurrency - len(active)
            claimed: list[tuple[int, str]] = []
            if limit > 0:
                claimed = conn.execute(
                    claim_sql,
                    {"active": [int(a) for a in active], "limit": limit, "task_id": task_id},
                ).fetchall()
                statements += 1
            if mark == "claim":
                for execution_id, _ in claimed:
                    conn.execute(COMPLETE_SQL, [execution_id])
                    statements += 1
            else:
                for execution_id, instruction in claimed:
                    with conn.transaction():
                        conn.execute(MARK_SQL, [int(instruction)])
                        conn.execute(COMPLETE_SQL, [execution_id])
                    statements += 2
            if not claimed and not active:
                break
        meter.stop()
    peak = peak_rss_mb()
    return {
        "instructions": accounts,
        "wall": meter.wall,
        "cpu": meter.cpu,
        "queries": {"ALL": statements},
        "query_total": statements,
        "peak_rss_mb": peak,
        "problems": check_drained(task.name, accounts, concurrency),
    }


# -- 3. slot refill --------------------------------------------------------------


def _thread_completer(progress: Progress, hold: float) -> tuple[Callable[..., None], Any]:
    """A receiver that queues each execution, and a thread that completes it ``hold`` s later."""
    from django.db import connection, transaction
    from django.utils import timezone

    from example_site.accounts.models import UserAccount

    pending: queue.Queue[Any] = queue.Queue()

    def receiver(sender: Any, *, instruction: str, execution: Any, **kwargs: Any) -> None:
        pending.put((time.monotonic() + hold, instruction, execution))

    def work() -> None:
        try:
            while True:
                item = pending.get()
                if item is None:
                    return
                due, instruction, execution = item
                time.sleep(max(0.0, due - time.monotonic()))
                with transaction.atomic():
                    UserAccount.objects.filter(pk=int(instruction)).update(
                        email_sent_at=timezone.now()
                    )
                    ended = execution.complete()
                progress.add(int(ended), 1)
        finally:
            connection.close()

    thread = threading.Thread(target=work, name="bench-completer", daemon=True)
    thread.start()
    return receiver, (pending, thread)


def _gaps_ms(task_name: str, cycle_starts: list[Any]) -> tuple[list[float], list[float]]:
    """Each gap between an execution's ended_at and the next one's started_at, from the table.

    Also the part of each gap before the cycle that dispatched the next
    execution began (the wake-up: hearing of the end, waking the task,
    handing it to a worker); the rest is the cycle itself up to its dispatch
    (lock the row, read the active instructions, run the schedule).
    """
    import bisect

    from django_planton.models import MaintenanceTaskExecution

    rows = list(
        MaintenanceTaskExecution.objects.filter(maintenance_task__nid=task_name)
        .order_by("started_at", "id")
        .values_list("started_at", "ended_at")
    )
    starts = sorted(cycle_starts)
    gaps, wakes = [], []
    for (_, ended_at), (started_at, _) in itertools.pairwise(rows):
        if ended_at is None:
            continue
        gaps.append((started_at - ended_at).total_seconds() * 1000)
        # The last cycle that began before this dispatch is the one that made it.
        index = bisect.bisect_right(starts, started_at) - 1
        if index >= 0 and starts[index] >= ended_at:
            wakes.append((starts[index] - ended_at).total_seconds() * 1000)
    return gaps, wakes


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _record_cycle_starts(runner: Any, task_name: str) -> list[Any]:
    """Note when each cycle of ``task_name`` begins, on the clock the table's timestamps use."""
    from django.utils import timezone

    starts: list[Any] = []
    run = runner.cycle_runner.run

    def timed_run(task: Any, *args: Any, **kwargs: Any) -> Any:
        if task.name == task_name:
            starts.append(timezone.now())
        return run(task, *args, **kwargs)

    runner.cycle_runner.run = timed_run
    return starts


def refill(params: dict[str, Any]) -> dict[str, Any]:
    """Workload 3: concurrency 1, delay 1 s; an execution ended elsewhere must refill at once."""
    from django_planton import Task
    from django_planton.runner import Runner, sync_tasks
    from django_planton.signals import task_dispatched

    accounts = params["accounts"]
    hold = params["hold"]
    counter = QueryCounter()
    counter.install()
    reset_tables(accounts)
    task = _email_task("bench_refill", concurrency=1, calculate_delay=_one_second)
    idle_calls = CallCounter()
    idle = Task(
        name="bench_refill_idle", schedule=idle_calls, concurrency=1, calculate_delay=_one_second
    )
    task_ids = {name: pk for pk, name in sync_tasks([task, idle]).items()}
    progress = Progress(accounts)

    completer_process = None
    if params["completer"] == "thread":
        receiver, (pending, thread) = _thread_completer(progress, hold)
        task_dispatched.connect(receiver, sender=task, weak=False)
    else:
        completer_process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.completer",
                "--task-id",
                str(task_ids[task.name]),
                "--count",
                str(accounts),
                "--hold",
                str(hold),
                "--timeout",
                str(params["timeout"]),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert completer_process.stdout is not None
        completer_process.stdout.readline()  # "ready"

    runner = Runner([task, idle])
    cycle_starts = _record_cycle_starts(runner, task.name)
    meter = Meter(counter)
    meter.start()
    runner.start()
    if completer_process is not None:
        try:
            completer_process.wait(timeout=params["timeout"] + 10)
        except subprocess.TimeoutExpired:
            completer_process.kill()
            completer_process.wait()
        finished = completer_process.returncode == 0
    else:
        finished = progress.done.wait(params["timeout"])
    meter.stop()
    runner.stop(timeout=30)
    if completer_process is None:
        pending.put(None)
        thread.join(timeout=10)

    problems = [] if finished else [f"not drained within {params['timeout']} s"]
    problems += check_drained(task.name, accounts, 1)
    gaps, wakes = _gaps_ms(task.name, cycle_starts)
    idle_rate = idle_calls.calls / meter.wall if meter.wall else 0.0
    if idle_rate > 2.5:
        problems.append(f"idle task attempted {idle_rate:.1f} times per second (delay 1 s)")
    return {
        "instructions": accounts,
        "wall": meter.wall,
        "cpu": meter.cpu,
        "cycles": meter.queries.get("CYCLE", 0),
        "query_total": total(meter.queries),
        "gap_median_ms": statistics.median(gaps) if gaps else None,
        "gap_p95_ms": _percentile(gaps, 0.95) if gaps else None,
        "gap_max_ms": max(gaps) if gaps else None,
        "wake_median_ms": statistics.median(wakes) if wakes else None,
        "idle_attempts_per_s": idle_rate,
        "problems": problems,
    }


# -- 3b. an idle task still backs off ---------------------------------------------


def backoff(params: dict[str, Any]) -> dict[str, Any]:
    """Count the attempts of an idle task (delay 1 s): alone, then while its executions end."""
    from django.utils import timezone

    from django_planton import Task
    from django_planton.models import ExecutionState, MaintenanceTaskExecution
    from django_planton.runner import Runner, sync_tasks

    seconds = params["seconds"]
    counter = QueryCounter()
    counter.install()
    reset_tables(0)
    calls = CallCounter()
    task = Task(name="bench_backoff", schedule=calls, concurrency=10, calculate_delay=_one_second)
    (task_id,) = sync_tasks([task]).keys()
    runner = Runner([task])
    runner.start()

    phases = {}
    stop = threading.Event()

    def poke() -> None:
        """End one of the task's executions every 20 ms: each end is a wake-up."""
        from django.db import connection

        number = 0
        try:
            while not stop.wait(0.02):
                number += 1
                MaintenanceTaskExecution.objects.create(
                    maintenance_task_id=task_id,
                    instruction=f"poke-{number}",
                    started_at=timezone.now(),
                    state=ExecutionState.RUNNING,
                ).complete()
        finally:
            connection.close()

    for phase in ("alone", "woken every 20 ms"):
        poker = threading.Thread(target=poke, daemon=True) if phase != "alone" else None
        calls_before, cycles_before = calls.calls, counter.snapshot()["CYCLE"]
        if poker:
            poker.start()
        time.sleep(seconds)
        if poker:
            stop.set()
            poker.join()
        phases[phase] = {
            "attempts": calls.calls - calls_before,
            "cycles": counter.snapshot()["CYCLE"] - cycles_before,
        }
    runner.stop(timeout=30)
    problems = [
        f"idle task attempted {figures['attempts']} times in {seconds} s ({phase}), delay 1 s"
        for phase, figures in phases.items()
        if figures["attempts"] > 2 * seconds + 2
    ]
    return {"seconds": seconds, "phases": phases, "problems": problems}


# -- 4. idle ---------------------------------------------------------------------


def _connection_sampler(stop: threading.Event, interval: float) -> tuple[list[int], Any]:
    """Count this database's connections from a connection of its own, every ``interval`` s."""
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    conninfo = {k: v for k, v in params.items() if k in CONNINFO_KEYS}
    samples: list[int] = []

    def sample() -> None:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            while not stop.wait(interval):
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
                samples.append(count)

    thread = threading.Thread(target=sample, name="bench-connections", daemon=True)
    thread.start()
    return samples, thread


def idle(params: dict[str, Any]) -> dict[str, Any]:
    """Workload 4: many tasks that never find work, delays of 1 s; what does waiting cost?"""
    from django.conf import settings

    from django_planton import Task
    from django_planton.runner import Runner

    counter = QueryCounter()
    counter.install()
    profiles = maybe_profile()
    reset_tables(0)
    calls = CallCounter()
    tasks = [
        Task(name=f"bench_idle_{n:04d}", schedule=calls, calculate_delay=_one_second)
        for n in range(params["tasks"])
    ]
    stop = threading.Event()
    samples: list[int] = []
    sampler = None
    if vendor() == "postgresql":
        samples, sampler = _connection_sampler(stop, 0.5)
    runner = Runner(tasks)
    workers = runner.planton._max_workers
    runner.start()
    time.sleep(params["warmup"])
    calls_before = calls.calls
    meter = Meter(counter)
    meter.start()
    time.sleep(params["seconds"])
    meter.stop()
    attempts = calls.calls - calls_before
    stop.set()
    runner.stop(timeout=30)
    if sampler:
        sampler.join(timeout=5)
    if profiles:
        profiles.dump()
    queries = total(meter.queries)
    problems = []
    if attempts < 0.8 * len(tasks) * meter.wall:  # delays of 1 s: about one attempt each second
        problems.append(f"{attempts} attempts of {len(tasks)} tasks in {meter.wall:.1f} s")
    return {
        "tasks": len(tasks),
        "workers": workers,
        "setting_workers": settings.PLANTON_MAX_WORKERS,
        "seconds": meter.wall,
        "cpu": meter.cpu,
        # The connection sampler is the benchmark's, not the runner's.
        "cpu_share": (meter.cpu - meter.threads.get("bench-connections", 0.0)) / meter.wall,
        "threads": meter.threads,
        "attempts": attempts,
        "attempts_per_s": attempts / meter.wall,
        "queries": dict(meter.queries),
        "queries_per_s": queries / meter.wall,
        "queries_per_attempt": queries / attempts if attempts else None,
        "connections_max": max(samples) if samples else None,
        "connections_median": statistics.median(samples) if samples else None,
        "peak_rss_mb": peak_rss_mb(),
        "problems": problems,
    }


WORKLOADS = {
    "drain": drain,
    "baseline": baseline,
    "refill": refill,
    "backoff": backoff,
    "idle": idle,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("params", type=json.loads, help="the workload's parameters, as JSON")
    args = parser.parse_args()
    setup_django()
    try:
        result = WORKLOADS[args.workload](args.params)
    except Exception as error:  # report, so the orchestrator can say what failed
        import traceback

        traceback.print_exc()
        result = {"problems": [f"{type(error).__name__}: {error}"]}
    result["vendor"] = vendor()
    result["pid"] = os.getpid()
    emit(result)


if __name__ == "__main__":
    main()
