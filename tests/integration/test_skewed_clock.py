"""Two ``run_planton`` processes on one database, one with its wall clock ten minutes off.

Every time the runners store or compare must come from the database's clock:
a runner whose host clock runs ahead would otherwise store next attempts
ten minutes late (the other runner then waits out its maximum wait) and end
the other runner's executions as overdue while they are being worked on; one
whose clock runs behind would have its own executions ended at once.

The skewed runner runs under ``scripts/clockshift.py``, which moves only
``CLOCK_REALTIME`` (its sleeps and timeouts are unaffected). Both runners
schedule, for about 9 s:

- ``testapp_slow_jobs``: concurrency 3, each job takes its receiver 1 s, and
  the task's ``maximum_execution_duration`` is 4 s (housekeeping every 1 s);
- ``testapp_tick``: finds nothing, constant 1 s delay; each attempt leaves
  a group naming the runner that made it.

A thread samples, on the database's clock, the tick's row and how many
executions run and how many receivers work. PostgreSQL and MariaDB only: SQLite
runs inside the process, so its clock is the process's clock.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from django_planton.models import MaintenanceTask, MaintenanceTaskExecution
from scripts import clockshift
from scripts.measure import most_at_once

from .testapp.tasks import (
    SLOW_CONCURRENCY,
    SLOW_JOB_PREFIX,
    TICK_PREFIX,
    WORKED_PREFIX,
    WORKING_PREFIX,
)

pytestmark = [
    pytest.mark.skipif(
        connection.vendor == "sqlite", reason="SQLite's clock is the process's clock"
    ),
    pytest.mark.django_db(transaction=True),
]

SLOW_TASK = "testapp_slow_jobs"
TICK_TASK = "testapp_tick"
NORMAL = "runner-normal"
SKEWED = "runner-skewed"
JOBS = 40  # more than 9 s of work at 3 at once: the task is busy throughout
WORK_SECONDS = 1.0
MAX_DURATION = 4.0
HOUSEKEEPING_INTERVAL = 1.0
TICK_DELAY = 1.0
RUN_FOR = 9.0
SAMPLE_EVERY = 0.05
# How far the tick's stored times may be from the database's now, beyond its delay.
SLACK = 1.5
# Stored times of the run may lie this far outside it (on the database's clock).
MARGIN = timedelta(seconds=1)
SHOWN = 5  # examples per problem, at the most


@pytest.fixture(scope="module")
def shim() -> Path:
    if clockshift.find_compiler() is None:
        pytest.skip("no C compiler (cc, gcc or clang) to build scripts/clockshift.c")
    return clockshift.build()


def database_now() -> datetime:
    """The database server's current time (UTC, aware)."""
    sql = {"postgresql": "SELECT statement_timestamp()", "mysql": "SELECT UTC_TIMESTAMP(6)"}
    with connection.cursor() as cursor:
        cursor.execute(sql[connection.vendor])
        (value,) = cursor.fetchone()
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Sample:
    """One look at the database: its time, the tick's row, the slow task's work."""

    now: datetime
    next_attempt_at: datetime | None
    last_attempted_at: datetime | None
    running: int  # executions of the slow task not ended
    working: int  # receivers of the slow task at work, in either process


class Sampler(threading.Thread):
    """Samples every 50 ms, on a connection of its own, until stopped."""

    def __init__(self) -> None:
        super().__init__(name="test-clock-sampler", daemon=True)
        self.samples: list[Sample] = []
        self.errors: list[BaseException] = []
        self._stopping = threading.Event()

    def run(self) -> None:
        running = MaintenanceTaskExecution.objects.for_task(SLOW_TASK).running()
        working = Group.objects.filter(name__startswith=WORKING_PREFIX)
        tick = MaintenanceTask.objects.filter(nid=TICK_TASK)
        try:
            while not self._stopping.wait(SAMPLE_EVERY):
                row = tick.values("next_attempt_at", "last_attempted_at").first() or {}
                self.samples.append(
                    Sample(
                        now=database_now(),
                        next_attempt_at=row.get("next_attempt_at"),
                        last_attempted_at=row.get("last_attempted_at"),
                        running=running.count(),
                        working=working.count(),
                    )
                )
        except Exception as error:  # handed to the test
            self.errors.append(error)
        finally:
            connection.close()

    def stop(self) -> list[Sample]:
        self._stopping.set()
        self.join(10)
        return self.samples


def ticks_by_runner() -> Counter[str]:
    names = Group.objects.filter(name__startswith=TICK_PREFIX).values_list("name", flat=True)
    return Counter(name.removeprefix(TICK_PREFIX).rsplit("-", 1)[0] for name in names)


def seconds(value: datetime | None, origin: datetime) -> str:
    return "never" if value is None else f"{(value - origin).total_seconds():+.1f}s"


def shown(items: Iterable[str]) -> str:
    listed = list(items)
    more = f"; {len(listed) - SHOWN} more" if len(listed) > SHOWN else ""
    return "; ".join(listed[:SHOWN]) + more


@pytest.mark.parametrize("shift", [600.0, -600.0], ids=["clock-600s-ahead", "clock-600s-behind"])
def test_a_runner_with_a_skewed_clock_keeps_the_shared_limits_and_cadence(
    planton_process, subprocess_database_url, shim, shift
):
    MaintenanceTask.objects.create(
        nid=SLOW_TASK,
        concurrency=SLOW_CONCURRENCY,
        maximum_execution_duration=timedelta(seconds=MAX_DURATION),
    )
    Group.objects.bulk_create([Group(name=f"{SLOW_JOB_PREFIX}{n:03d}") for n in range(JOBS)])
    shifted = clockshift.shifted_env(shift, library=shim)
    skew = {name: shifted[name] for name in ("LD_PRELOAD", clockshift.SHIFT_VARIABLE)}
    args = ["run_planton", "--task", SLOW_TASK, "--task", TICK_TASK, "--shutdown-timeout", "10"]
    settings = {
        "PLANTON_TEST_WORK_SECONDS": str(WORK_SECONDS),
        "PLANTON_TEST_TICK_DELAY": str(TICK_DELAY),
        "PLANTON_TEST_HOUSEKEEPING_INTERVAL": str(HOUSEKEEPING_INTERVAL),
    }
    began = database_now()
    runners = {
        NORMAL: planton_process(
            args, subprocess_database_url, PLANTON_TEST_HOSTNAME=NORMAL, **settings
        ),
        SKEWED: planton_process(
            args, subprocess_database_url, PLANTON_TEST_HOSTNAME=SKEWED, **settings, **skew
        ),
    }
    for name, process in runners.items():
        assert process.wait_for_output("Scheduling 2 task(s)"), (
            f"{name} did not start:\n{process.stdout}{process.stderr}"
        )

    sampler = Sampler()
    sampler.start()
    try:
        ticks_before, window_started = ticks_by_runner(), time.monotonic()
        time.sleep(RUN_FOR)
        ticks_during = ticks_by_runner() - ticks_before
        window = time.monotonic() - window_started
    finally:
        samples = sampler.stop()
    for process in runners.values():
        process.send_signal(signal.SIGTERM)
    exits = {name: process.wait(timeout=20) for name, process in runners.items()}
    ended = database_now()
    assert not sampler.errors, sampler.errors
    assert samples, "the sampler took no samples"

    executions = list(MaintenanceTaskExecution.objects.for_task(SLOW_TASK).order_by("pk"))
    worked = Counter(
        name.removeprefix(WORKED_PREFIX).split("-")[0]
        for name in Group.objects.filter(name__startswith=WORKED_PREFIX).values_list(
            "name", flat=True
        )
    )
    by_host = Counter(execution.hostname for execution in executions)
    completed = [e for e in executions if e.ended_at is not None and e.terminated_at is None]
    problems: list[str] = []

    # -- both runners ran and stopped cleanly --------------------------------------------
    for name, process in runners.items():
        if exits[name] != 0 or "Traceback" in process.stderr:
            problems.append(f"{name} exited with {exits[name]}:\n{process.stderr[-3000:]}")

    # -- the slow task: nothing ended early, nothing twice, never more than 3 at once -------
    terminated = [e for e in executions if e.terminated_at is not None]
    if terminated:
        problems.append(
            f"{len(terminated)} of {len(executions)} executions were terminated (each job takes "
            f"{WORK_SECONDS:g}s, the maximum is {MAX_DURATION:g}s): "
            + shown(
                f"#{e.pk} of {e.hostname} started {seconds(e.started_at, began)}, terminated "
                f"{seconds(e.terminated_at, began)} ({e.terminated_reason})"
                for e in terminated
            )
        )
    dispatched = Counter(execution.instruction for execution in executions)
    twice = {job: count for job, count in dispatched.items() if count > 1}
    if twice:
        problems.append(f"jobs dispatched more than once (job: executions): {twice}")
    worked_twice = {job: count for job, count in worked.items() if count > 1}
    if worked_twice:
        problems.append(f"jobs worked on more than once (job: times): {worked_twice}")
    still_running = [e for e in executions if e.ended_at is None]
    if still_running:
        problems.append(
            f"{len(still_running)} executions still running after both runners stopped: "
            + shown(f"#{e.pk} of {e.hostname}" for e in still_running)
        )
    # A span that ends before it starts mixes two clocks: the check of the
    # stored times below says so; here it counts as an instant.
    swept = most_at_once((e.started_at, max(e.started_at, e.ended_at or ended)) for e in executions)
    most_running = max(sample.running for sample in samples)
    most_working = max(sample.working for sample in samples)
    for what, count in (
        ("executions at once (from started_at/ended_at)", swept),
        ("executions running at once (sampled)", most_running),
        ("receivers working at once (sampled)", most_working),
    ):
        if count > SLOW_CONCURRENCY:
            problems.append(f"{count} {what}; the concurrency is {SLOW_CONCURRENCY}")
    if len(completed) < 8 or most_working < 2:
        problems.append(
            f"too little work to prove anything: {len(completed)} jobs completed, at most "
            f"{most_working} receivers working at once"
        )

    # -- every stored time is on the database's clock ------------------------------------
    out_of_run = [
        f"#{e.pk} of {e.hostname}: {field} {seconds(value, began)}"
        for e in executions
        for field, value in (
            ("started_at", e.started_at),
            ("ended_at", e.ended_at),
            ("terminated_at", e.terminated_at),
        )
        if value is not None and not began - MARGIN <= value <= ended + MARGIN
    ]
    if out_of_run:
        problems.append(
            f"{len(out_of_run)} execution times outside the run, which lasted "
            f"{seconds(ended, began)} on the database's clock: " + shown(out_of_run)
        )

    # -- the tick: one cadence, shared by both runners -----------------------------------
    attempts = sum(ticks_during.values())
    expected = window / TICK_DELAY
    if not (expected * 0.5 - 1 <= attempts <= expected * 1.5 + 2):
        problems.append(
            f"{attempts} attempts of {TICK_TASK} in {window:.1f}s, expected about "
            f"{expected:.0f} (delay {TICK_DELAY:g}s)"
        )
    starved = [name for name in runners if ticks_during[name] == 0]
    if starved:
        problems.append(
            f"{', '.join(starved)} never attempted {TICK_TASK} in {window:.1f}s "
            f"(attempts per runner: {dict(ticks_during)})"
        )
    ahead = [
        (sample.next_attempt_at - sample.now).total_seconds()
        for sample in samples
        if sample.next_attempt_at is not None
    ]
    last = [
        (sample.last_attempted_at - sample.now).total_seconds()
        for sample in samples
        if sample.last_attempted_at is not None
    ]
    if not ahead or not last:
        problems.append(f"{TICK_TASK}'s row was never attempted while sampled")
    else:
        for field, values, lowest, highest in (
            ("next_attempt_at", ahead, -(TICK_DELAY + SLACK), TICK_DELAY + SLACK),
            ("last_attempted_at", last, -(TICK_DELAY + SLACK + 1), SLACK),
        ):
            if min(values) < lowest or max(values) > highest:
                problems.append(
                    f"{TICK_TASK}'s {field} was from {min(values):+.1f}s to {max(values):+.1f}s "
                    f"off the database's now (allowed: {lowest:+g}s to {highest:+g}s)"
                )

    summary = (
        f"{SKEWED} with its clock {shift:+g}s off, next to {NORMAL}, on {connection.vendor}: "
        f"{len(executions)} executions of {SLOW_TASK} ({dict(by_host)}), {len(completed)} "
        f"completed; {attempts} attempts of {TICK_TASK} in {window:.1f}s "
        f"({dict(ticks_during)}); {len(samples)} samples"
    )
    assert not problems, "\n- ".join([summary, *problems])
