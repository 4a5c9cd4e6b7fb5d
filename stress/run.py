#!/usr/bin/env python
"""Stress run of django-planton: many runners, faults and bad input; nothing lost or run twice.

    .venv/bin/python stress/run.py            # full form (>= 5,000 accounts, a few minutes)
    .venv/bin/python stress/run.py --quick    # CI form (1,500 accounts, under 3 minutes)

Starts a throwaway PostgreSQL (``scripts/postgres.sh``, port ``PLANTON_PGPORT``,
54349 by default), migrates, seeds accounts, and runs four ``manage.py
run_planton`` processes with ``stress.settings``. Then, one after the other:
steady work, an operator's pause, an operator's concurrency override, a
``kill -9`` of a runner in the middle of its work, a PostgreSQL restart and a
SIGTERM of every runner during work. Each scenario prints PASS or FAIL with
its figures; the checks over the whole run (no instruction dispatched twice,
every account served, concurrency, cadence) come last, then a summary table.
Exits 1 when any check fails. PostgreSQL and every process it started are
stopped on the way out, whatever happens. ``stress/README.md`` explains each line.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "manage.py"
POSTGRES_SH = ROOT / "scripts" / "postgres.sh"
PGPORT = os.environ.get("PLANTON_PGPORT", "54349")
PGROOT = Path(os.environ.get("PLANTON_PGROOT", "/tmp/planton-stress-pg"))
WORK = Path(os.environ.get("STRESS_WORK_DIR", "/tmp/planton-stress"))

RUNNER_NAMES = ("r1", "r2", "r3", "r4")
EMAIL_TASK = "send_user_email"
IDLE_TASK = "idle_probe"
SLOW_TASK = "slow_probe"
BAD_TASK = "bad_input_probe"
IDLE_DELAY = 1.0
SLOW_DELAY = 300.0
TERMINATED_REASON = "maximum execution duration exceeded"
KILL_MAX_DURATION = 3  # seconds, set on send_user_email's row from the kill scenario on
SHUTDOWN_LIMIT = 35.0  # seconds a runner may take to exit after SIGTERM
RATE_LIMIT = 1.5  # attempts per second across the runners, for a task with a 1 s delay
OVERRIDE = 2
OVERRIDE_GRACE = 2.0  # seconds for executions above a lowered limit to drain
SAMPLE_EVERY = 0.02
DATABASE_DOWN_FOR = 3.0
LISTEN_WITHIN = 10.0  # seconds after a restart by which every runner LISTENs again


@dataclass(frozen=True)
class Profile:
    name: str
    accounts: int  # seeded before the runners start
    backlog: int  # accounts owed at the start of each scenario (topped up with seed_accounts)
    steady: float  # seconds of undisturbed work, where the cadence is measured
    pause_watch: float  # seconds watched after pausing
    override_watch: float  # seconds watched under the override
    drain_timeout: float
    repeated_restarts: int  # PostgreSQL restarts after the first, for the listeners


FULL = Profile("full", 5000, 2000, 30.0, 6.0, 10.0, 240.0, 3)
QUICK = Profile("quick", 1500, 800, 12.0, 4.0, 6.0, 90.0, 0)


def now() -> datetime:
    return datetime.now(UTC)


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


class Interrupted(Exception):
    """SIGTERM or SIGINT reached the stress run itself."""


# -- the database, from outside the runners ----------------------------------------------


class Database:
    """One autocommit psycopg connection that reconnects (PostgreSQL is restarted on purpose)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: psycopg.Connection | None = None

    def rows(self, sql: str, params: Sequence[Any] = (), *, retry_for: float = 30.0) -> list[tuple]:
        deadline = time.monotonic() + retry_for
        while True:
            try:
                if self._connection is None or self._connection.closed:
                    self._connection = psycopg.connect(self.url, autocommit=True, connect_timeout=3)
                cursor = self._connection.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError:
                self.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.rows(sql, params)

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None


@dataclass(frozen=True, slots=True)
class Sample:
    at: datetime
    running: int
    limit: int


class Sampler(threading.Thread):
    """Counts send_user_email's running executions every 20 ms, from a connection of its own."""

    SQL = (
        "SELECT t.concurrency, t.maximum_concurrent_execution_count, "
        "(SELECT count(*) FROM maintenance_task_execution e "
        " WHERE e.maintenance_task_id = t.id AND e.ended_at IS NULL) "
        "FROM maintenance_task t WHERE t.nid = %s"
    )

    def __init__(self, url: str) -> None:
        super().__init__(name="sampler", daemon=True)
        self.url = url
        self.samples: list[Sample] = []
        self.failures = 0
        self._halt = threading.Event()

    def run(self) -> None:
        connection: psycopg.Connection | None = None
        while not self._halt.is_set():
            try:
                if connection is None:
                    connection = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
                row = connection.execute(self.SQL, (EMAIL_TASK,)).fetchone()
                if row is not None:
                    declared, override, running = row
                    self.samples.append(Sample(now(), running, override or declared))
            except psycopg.Error:
                self.failures += 1
                if connection is not None:
                    with contextlib.suppress(psycopg.Error):
                        connection.close()
                connection = None
                self._halt.wait(0.2)
                continue
            self._halt.wait(SAMPLE_EVERY)
        if connection is not None:
            connection.close()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)

    def window(self, start: datetime, end: datetime) -> list[Sample]:
        return [sample for sample in self.samples if start <= sample.at <= end]


# -- runner processes ----------------------------------------------------------------------


@dataclass
class RunnerProcess:
    name: str  # r1..r4
    generation: int
    process: subprocess.Popen
    started: float

    @property
    def label(self) -> str:
        """The process's STRESS_RUNNER: also the hostname of its executions and its log's name."""
        return f"{self.name}.g{self.generation}"

    @property
    def log(self) -> Path:
        return WORK / "logs" / f"{self.label}.log"

    @property
    def out(self) -> Path:
        return WORK / "logs" / f"{self.label}.out"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass(frozen=True, slots=True)
class Execution:
    id: int
    task: str
    instruction: str
    started_at: datetime
    ended_at: datetime | None
    hostname: str
    failed: bool
    terminated_at: datetime | None
    terminated_reason: str | None

    @property
    def succeeded(self) -> bool:
        return self.ended_at is not None and not self.failed and self.terminated_at is None


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Stress:
    profile: Profile
    database_url: str = ""
    db: Database | None = None
    sampler: Sampler | None = None
    runners: dict[str, RunnerProcess] = field(default_factory=dict)
    every_process: list[RunnerProcess] = field(default_factory=list)
    generations: Counter = field(default_factory=Counter)
    checks: list[Check] = field(default_factory=list)
    summary: dict[str, str] = field(default_factory=dict)
    seeded: int = 0
    started: float = field(default_factory=time.monotonic)
    postgres_started: bool = False
    # Moments the checks over the whole run need.
    limits: list[tuple[datetime, int]] = field(default_factory=list)
    lowered_at: list[datetime] = field(default_factory=list)
    steady_window: tuple[datetime, datetime] | None = None
    idle_paused: list[tuple[datetime, datetime]] = field(default_factory=list)
    runner_restarts: list[datetime] = field(default_factory=list)
    killed_instructions: list[str] = field(default_factory=list)
    killed_label: str = ""
    shutdown_times: list[float] = field(default_factory=list)

    # -- output ----------------------------------------------------------------

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    def record(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
        return ok

    # -- the whole run ---------------------------------------------------------

    def run(self) -> int:
        def interrupt(signum: int, frame: Any) -> None:
            raise Interrupted(signal.Signals(signum).name)

        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.setup()
            scenarios = [
                self.scenario_steady,
                self.scenario_pause,
                self.scenario_override,
                self.scenario_kill,
                self.scenario_database_restart,
                self.scenario_repeated_restarts,
                self.scenario_sigterm,
                self.scenario_drain,
                self.scenario_final_stop,
            ]
            if not self.profile.repeated_restarts:
                scenarios.remove(self.scenario_repeated_restarts)
            for scenario in scenarios:
                self.guarded(scenario)
            if self.sampler is not None:
                self.sampler.stop()
            self.guarded(self.checks_over_the_run)
        except Interrupted as error:
            self.record("run", False, f"interrupted by {error}")
        except Exception as error:
            traceback.print_exc()
            self.record("run", False, f"{type(error).__name__}: {error}")
        finally:
            self.cleanup()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.print_summary()
        return 0 if self.checks and all(check.ok for check in self.checks) else 1

    def guarded(self, scenario: Callable[[], None]) -> None:
        name = scenario.__name__.removeprefix("scenario_").removeprefix("checks_")
        self.say(f"== {name}")
        try:
            scenario()
        except Interrupted:
            raise
        except Exception as error:
            traceback.print_exc()
            self.record(name, False, f"{type(error).__name__}: {error}")
            if scenario not in (self.scenario_final_stop, self.checks_over_the_run):
                self.revive_runners()

    # -- set-up and clean-up ---------------------------------------------------

    def env(self, label: str, hang_name: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="stress.settings",
            DATABASE_URL=self.database_url,
            EMAIL_URL="memorymail://",
            STRESS_DIR=str(WORK),
            STRESS_RUNNER=label,
            STRESS_HANG_NAME=hang_name or label,
            PYTHONUNBUFFERED="1",
        )
        return env

    def manage(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [sys.executable, str(MANAGE), *args],
            cwd=ROOT,
            env=self.env("setup"),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-2000:]}")
        return result.stdout

    def postgres_script(self, verb: str) -> str:
        env = dict(os.environ, PLANTON_PGPORT=PGPORT, PLANTON_PGROOT=str(PGROOT))
        result = subprocess.run(
            ["bash", str(POSTGRES_SH), verb],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"scripts/postgres.sh {verb} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def setup(self) -> None:
        if WORK.exists():
            shutil.rmtree(WORK)
        (WORK / "logs").mkdir(parents=True)
        (WORK / "mail").mkdir()
        self.say(f"Profile {self.profile.name}; work files in {WORK}")
        self.postgres_script("stop")  # a server left over by an interrupted run
        self.postgres_started = True
        self.database_url = self.postgres_script("start").splitlines()[-1]
        self.say(f"PostgreSQL at {self.database_url} (data in {PGROOT})")
        self.manage("migrate", "--verbosity", "0")
        self.seed(self.profile.accounts)
        self.db = Database(self.database_url)
        self.sampler = Sampler(self.database_url)
        self.sampler.start()

    def seed(self, count: int) -> None:
        self.manage("seed_accounts", "--count", str(count))
        self.seeded += count
        self.say(f"Seeded {count} account(s) ({self.seeded} in all)")

    def cleanup(self) -> None:
        """Stop the sampler, every runner ever started and PostgreSQL; each step on its own."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("the sampler", lambda: self.sampler.stop() if self.sampler else None),
            ("the runners", self.stop_every_process),
            ("the connection", lambda: self.db.close() if self.db else None),
        ]
        if self.postgres_started:
            steps.append(("PostgreSQL", lambda: self.postgres_script("stop")))
        for what, step in steps:
            try:
                step()
            except BaseException as error:
                print(f"Stopping {what} failed: {error!r}", file=sys.stderr)
        left = [runner.label for runner in self.every_process if runner.alive]
        self.say(f"Cleaned up: PostgreSQL stopped; runner processes left: {left or 'none'}")

    def stop_every_process(self) -> None:
        for runner in self.every_process:
            if runner.alive:
                runner.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for runner in self.every_process:
            try:
                runner.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                runner.process.kill()
                runner.process.wait(timeout=10)

    # -- runners ---------------------------------------------------------------

    def start_runner(self, name: str) -> RunnerProcess:
        self.generations[name] += 1
        generation = self.generations[name]
        label = f"{name}.g{generation}"
        out = (WORK / "logs" / f"{label}.out").open("ab")
        process = subprocess.Popen(
            [sys.executable, str(MANAGE), "run_planton", "--shutdown-timeout", "30"],
            cwd=ROOT,
            env=self.env(label, hang_name=name),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C of the stress run reaches it only through cleanup()
        )
        out.close()
        runner = RunnerProcess(name, generation, process, time.monotonic())
        self.runners[name] = runner
        self.every_process.append(runner)
        return runner

    def start_runners(self, names: Iterable[str] = RUNNER_NAMES) -> list[RunnerProcess]:
        started = [self.start_runner(name) for name in names]
        self.wait_ready(started)
        return started

    def wait_ready(self, runners: Sequence[RunnerProcess], timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(runners)
        while waiting:
            for runner in list(waiting):
                if runner.out.exists() and b"Scheduling" in runner.out.read_bytes():
                    waiting.remove(runner)
                elif not runner.alive:
                    raise RuntimeError(
                        f"runner {runner.label} exited ({runner.process.returncode}) at start; "
                        f"see {runner.out}"
                    )
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"runners not ready after {timeout:g}s: {waiting}")
            time.sleep(0.1)
        self.say(f"Runners up: {', '.join(runner.label for runner in runners)}")

    def stop_runners(
        self, runners: Sequence[RunnerProcess], sig: signal.Signals = signal.SIGTERM
    ) -> dict[str, tuple[float, int | None]]:
        """Signal the runners at once; return, per label, seconds until exit and the exit code."""
        sent = time.monotonic()
        for runner in runners:
            runner.process.send_signal(sig)
        results: dict[str, tuple[float, int | None]] = {}
        while len(results) < len(runners):
            for runner in runners:
                if runner.label not in results and runner.process.poll() is not None:
                    results[runner.label] = (time.monotonic() - sent, runner.process.returncode)
            if time.monotonic() - sent > SHUTDOWN_LIMIT + 10:
                for runner in runners:
                    if runner.label not in results:
                        runner.process.kill()
                        runner.process.wait(timeout=10)
                        results[runner.label] = (time.monotonic() - sent, None)
            time.sleep(0.02)
        return results

    def revive_runners(self) -> None:
        """After a failed scenario: get back to four live runners for the next one."""
        (WORK / "hang-r1").unlink(missing_ok=True)
        dead = [
            name
            for name in RUNNER_NAMES
            if not self.runners.get(name, None) or not self.runners[name].alive
        ]
        if dead:
            self.say(f"Restarting runner(s) {', '.join(dead)}")
            self.start_runners(dead)

    # -- helpers over the database ---------------------------------------------

    @property
    def database(self) -> Database:
        assert self.db is not None
        return self.db

    def owed(self) -> int:
        return self.database.value(
            "SELECT count(*) FROM accounts_useraccount "
            "WHERE deleted_at IS NULL AND email_sent_at IS NULL"
        )

    def ensure_backlog(self) -> None:
        owed = self.owed()
        if owed < self.profile.backlog:
            self.seed(self.profile.backlog - owed)

    def task_row(self, name: str) -> tuple:
        rows = self.database.rows(
            "SELECT id, concurrency, maximum_concurrent_execution_count, is_paused, "
            "maximum_execution_duration FROM maintenance_task WHERE nid = %s",
            (name,),
        )
        if not rows:
            raise RuntimeError(f"no maintenance_task row for {name}")
        return rows[0]

    def effective_limit(self) -> int:
        _, declared, override, _, _ = self.task_row(EMAIL_TASK)
        return override or declared

    def starts_between(self, task: str, start: datetime, end: datetime | None = None) -> int:
        return self.database.value(
            "SELECT count(*) FROM maintenance_task_execution e JOIN maintenance_task t "
            "ON t.id = e.maintenance_task_id WHERE t.nid = %s AND e.started_at > %s "
            "AND e.started_at <= %s",
            (task, start, end or now() + timedelta(days=1)),
        )

    def attempts(self, task: str, kind: str = "attempt") -> list[tuple[datetime, str]]:
        return self.database.rows(
            "SELECT at, runner FROM stress_probe_event WHERE kind = %s AND task_name = %s "
            "ORDER BY at",
            (kind, task),
        )

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:g}s")
            time.sleep(0.05)

    def wait_for_work(self, timeout: float = 30.0) -> None:
        """Until send_user_email is busy: an execution started within the last half second."""

        def busy() -> bool:
            latest = self.database.value(
                "SELECT max(e.started_at) FROM maintenance_task_execution e "
                "JOIN maintenance_task t ON t.id = e.maintenance_task_id WHERE t.nid = %s",
                (EMAIL_TASK,),
            )
            return latest is not None and now() - latest < timedelta(seconds=0.5)

        self.wait_for("send_user_email at work", busy, timeout)

    def set_override(self, value: int) -> None:
        before = now()
        self.database.execute(
            "UPDATE maintenance_task SET maximum_concurrent_execution_count = %s, "
            "updated_at = now() WHERE nid = %s",
            (value, EMAIL_TASK),
        )
        after = now()
        limit = self.effective_limit()
        previous = self.limits[-1][1]
        # A higher limit may be used from the moment the UPDATE is sent; a lower
        # one binds from its commit on (a cycle that read the old one held the row).
        if limit < previous:
            self.limits.append((after, limit))
            self.lowered_at.append(after)
        else:
            self.limits.append((before, limit))

    def limit_at(self, moment: datetime) -> int:
        index = bisect.bisect_right([at for at, _ in self.limits], moment) - 1
        return self.limits[max(index, 0)][1]

    # -- scenarios -------------------------------------------------------------

    def scenario_steady(self) -> None:
        """Four runners, undisturbed: the shared cadence of idle_probe and bad_input_probe."""
        self.start_runners()
        self.wait_for(
            "task rows",
            lambda: (
                self.database.value(
                    "SELECT count(*) FROM maintenance_task WHERE nid = ANY(%s)",
                    ([EMAIL_TASK, IDLE_TASK, SLOW_TASK, BAD_TASK],),
                )
                == 4
            ),
            30,
        )
        self.limits.append((now() - timedelta(days=1), self.effective_limit()))
        start = now()
        sent_before = self.sent_count()
        time.sleep(self.profile.steady)
        end = now()
        self.steady_window = (start, end)
        sent = self.sent_count() - sent_before
        length = seconds(end - start)
        idle = [at for at, _ in self.attempts(IDLE_TASK) if start <= at <= end]
        bad = [at for at, _ in self.attempts(BAD_TASK, "schedule_failed") if start <= at <= end]
        idle_rate = len(idle) / length
        bad_rate = len(bad) / length
        self.summary["e-mails per second (steady)"] = f"{sent / length:.0f}"
        self.summary["idle_probe attempts/s, 4 runners"] = f"{idle_rate:.2f} (expect ~1.0)"
        self.say(f"{sent} e-mails in {length:.1f}s ({sent / length:.0f}/s)")
        self.record(
            "cadence idle_probe",
            0.5 <= idle_rate <= RATE_LIMIT,
            f"{len(idle)} attempts in {length:.1f}s across 4 runners = {idle_rate:.2f}/s "
            f"(delay {IDLE_DELAY:g}s; expect ~1.0, fail above {RATE_LIMIT})",
        )
        self.record(
            "cadence bad_input_probe",
            0.5 <= bad_rate <= RATE_LIMIT,
            f"{len(bad)} failed attempts in {length:.1f}s = {bad_rate:.2f}/s "
            f"(a failing task backs off like any other: expect ~1.0, fail above {RATE_LIMIT})",
        )
        slow = self.attempts(SLOW_TASK)
        self.record(
            "slow_probe first attempt",
            len(slow) == 1,
            f"{len(slow)} attempt(s) since start (expect exactly 1; delay {SLOW_DELAY:g}s)",
        )

    def sent_count(self) -> int:
        return self.database.value(
            "SELECT count(*) FROM accounts_useraccount WHERE email_sent_at IS NOT NULL"
        )

    def scenario_pause(self) -> None:
        """An operator pauses send_user_email and idle_probe in the admin."""
        self.ensure_backlog()
        self.wait_for_work()
        self.database.execute(
            "UPDATE maintenance_task SET is_paused = true, updated_at = now() WHERE nid = ANY(%s)",
            ([EMAIL_TASK, IDLE_TASK],),
        )
        paused = now()
        time.sleep(self.profile.pause_watch)
        watched = now()
        owed = self.owed()
        self.database.execute(
            "UPDATE maintenance_task SET is_paused = false, updated_at = now() WHERE nid = ANY(%s)",
            ([EMAIL_TASK, IDLE_TASK],),
        )
        resumed = now()
        self.idle_paused.append((paused, resumed))
        # send_user_email's delay after work is 0 s, idle_probe's 1 s: one delay plus 1 s.
        email_late = self.starts_between(EMAIL_TASK, paused + timedelta(seconds=1), watched)
        idle_late = [
            at
            for at, _ in self.attempts(IDLE_TASK)
            if paused + timedelta(seconds=IDLE_DELAY + 1) < at <= watched
        ]
        last_start = self.database.value(
            "SELECT max(e.started_at) FROM maintenance_task_execution e JOIN maintenance_task t "
            "ON t.id = e.maintenance_task_id WHERE t.nid = %s AND e.started_at <= %s",
            (EMAIL_TASK, watched),
        )
        last_idle = max((at for at, _ in self.attempts(IDLE_TASK) if at <= watched), default=None)
        lag = seconds(last_start - paused)
        idle_lag = seconds(last_idle - paused) if last_idle else float("nan")
        first_after = self.wait_for(
            "send_user_email resumes",
            lambda: self.database.value(
                "SELECT min(e.started_at) FROM maintenance_task_execution e "
                "JOIN maintenance_task t ON t.id = e.maintenance_task_id "
                "WHERE t.nid = %s AND e.started_at > %s",
                (EMAIL_TASK, resumed),
            ),
            15,
        )
        self.summary["pause: last start after pause"] = f"{lag:+.3f}s (limit +1.0s)"
        self.record(
            "operator pause",
            email_late == 0 and not idle_late and owed > 0,
            f"last send_user_email start {lag:+.3f}s after the pause, {email_late} started later "
            f"than 1s after it; last idle_probe attempt {idle_lag:+.3f}s after it, "
            f"{len(idle_late)} later than {IDLE_DELAY + 1:g}s; {owed} accounts owed while paused "
            f"(watched {self.profile.pause_watch:g}s); work resumed "
            f"{seconds(first_after - resumed):.2f}s after unpausing",
        )

    def scenario_override(self) -> None:
        """An operator sets send_user_email's concurrency override to 2."""
        self.ensure_backlog()
        self.wait_for_work()
        self.set_override(OVERRIDE)
        lowered = self.limits[-1][0]
        time.sleep(self.profile.override_watch)
        end = now()
        self.set_override(0)
        samples = (
            self.sampler.window(lowered + timedelta(seconds=OVERRIDE_GRACE), end)
            if self.sampler
            else []
        )
        highest = max((sample.running for sample in samples), default=-1)
        drained = (
            max(
                (
                    sample.running
                    for sample in self.sampler.window(
                        lowered, lowered + timedelta(seconds=OVERRIDE_GRACE)
                    )
                ),
                default=-1,
            )
            if self.sampler
            else -1
        )
        starts = self.starts_between(EMAIL_TASK, lowered, end)
        self.summary["override 2: max sampled running"] = f"{highest} (limit {OVERRIDE})"
        self.record(
            "operator override",
            0 <= highest <= OVERRIDE and len(samples) > 10 and starts > 0,
            f"max running {highest} over {len(samples)} samples from {OVERRIDE_GRACE:g}s after "
            f"the override to {OVERRIDE} (max {drained} within the grace period); "
            f"{starts} executions started under it",
        )

    def scenario_kill(self) -> None:
        """kill -9 of a runner whose executions hang: they end through the maximum duration."""
        self.ensure_backlog()
        self.database.execute(
            "UPDATE maintenance_task SET maximum_execution_duration = %s, updated_at = now() "
            "WHERE nid = %s",
            (timedelta(seconds=KILL_MAX_DURATION), EMAIL_TASK),
        )
        victim = self.runners["r1"]
        flag = WORK / "hang-r1"
        flag.touch()
        try:

            def victim_hangs() -> Any:
                # Which runner wins a cycle is not promised: keep work waiting
                # until the victim has won one, or the others drain it all.
                self.ensure_backlog()
                return self.database.value(
                    "SELECT count(*) FROM maintenance_task_execution WHERE hostname = %s "
                    "AND ended_at IS NULL AND started_at < now() - interval '1 second'",
                    (victim.label,),
                )

            self.wait_for(f"{victim.label} hangs in an execution", victim_hangs, 60)
            victim.process.kill()
            killed = now()
            victim.process.wait(timeout=10)
        finally:
            flag.unlink(missing_ok=True)
        self.killed_label = victim.label
        stuck = self.database.rows(
            "SELECT id, instruction FROM maintenance_task_execution "
            "WHERE hostname = %s AND ended_at IS NULL ORDER BY id",
            (victim.label,),
        )
        ids = [row[0] for row in stuck]
        self.killed_instructions = [row[1] for row in stuck]
        self.say(
            f"Killed {victim.label} (exit {victim.process.returncode}) with {len(ids)} running"
        )
        self.wait_for(
            "the killed runner's executions end",
            lambda: (
                ids
                and not self.database.value(
                    "SELECT count(*) FROM maintenance_task_execution "
                    "WHERE id = ANY(%s) AND ended_at IS NULL",
                    (ids,),
                )
            ),
            KILL_MAX_DURATION + 30,
        )
        ended = self.database.rows(
            "SELECT id, started_at, ended_at, terminated_at, terminated_reason "
            "FROM maintenance_task_execution WHERE id = ANY(%s)",
            (ids,),
        )
        terminated = [row for row in ended if row[3] is not None and row[4] == TERMINATED_REASON]
        too_early = [row for row in ended if seconds(row[2] - row[1]) < KILL_MAX_DURATION]
        after_kill = max(seconds(row[2] - killed) for row in ended)
        with contextlib.suppress(TimeoutError):
            self.wait_for(
                "execution_terminated receivers",
                lambda: self.terminated_signals(ids) >= len(ids),
                20,
            )
        signalled = self.terminated_signals(ids)
        if signalled < len(ids):
            for row in self.database.rows(
                "SELECT id, task_name, runner, at, detail FROM stress_probe_event "
                "WHERE kind = 'terminated' AND at > %s - interval '30 seconds'",
                (killed,),
            ):
                print(f"      terminated event: {row}")
            for row in ended:
                print(f"      execution: {row}")
        logged = self.grep_logs(
            [
                f"Welcome e-mail to account {instruction} gave up"
                for instruction in self.killed_instructions
            ]
        )
        self.start_runners(["r1"])
        self.summary["kill -9: executions terminated"] = (
            f"{len(terminated)}/{len(ids)}, {after_kill:.1f}s after the kill"
        )
        self.record(
            "kill -9 of a runner",
            bool(ids)
            and len(terminated) == len(ids)
            and not too_early
            and signalled == len(ids)
            and logged == len(ids),
            f"{len(ids)} executions left running by {victim.label}; {len(terminated)} terminated "
            f"({TERMINATED_REASON!r}) {after_kill:.1f}s after the kill (maximum duration "
            f"{KILL_MAX_DURATION}s), {len(too_early)} before their maximum duration; "
            f"execution_terminated received {signalled} time(s), the example site's receiver "
            f"logged {logged} of them",
        )

    def terminated_signals(self, ids: Sequence[int]) -> int:
        return self.database.value(
            "SELECT count(*) FROM stress_probe_event WHERE kind = 'terminated' "
            "AND detail = ANY(%s)",
            ([str(pk) for pk in ids],),
        )

    def grep_logs(self, needles: Sequence[str]) -> int:
        """How many of ``needles`` appear in the runners' log files."""
        text = "\n".join(
            path.read_text(errors="replace") for path in sorted((WORK / "logs").glob("*.log"))
        )
        return sum(1 for needle in needles if needle in text)

    def pg_ctl(self, *args: str) -> None:
        pgbin = (
            os.environ.get("PLANTON_PGBIN")
            or sorted(
                (str(path) for path in Path("/usr/lib/postgresql").glob("*/bin")),
                key=lambda path: [
                    int(part) for part in Path(path).parent.name.split(".") if part.isdigit()
                ],
            )[-1]
        )
        command = [f"{pgbin}/pg_ctl", "-D", str(PGROOT / "data"), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=120)

    def server_options(self) -> str:
        """The server's options, from postmaster.opts (as scripts/postgres.sh gave them)."""
        words = shlex.split((PGROOT / "data" / "postmaster.opts").read_text())[1:]
        options: list[str] = []
        skip = False
        for word in words:
            if skip:
                skip = False
            elif word == "-D":
                skip = True
            else:
                options.append(word)
        return shlex.join(options)

    def scenario_database_restart(self) -> None:
        """PostgreSQL stops (fast) while the runners work, then comes back."""
        self.ensure_backlog()
        self.wait_for_work()
        offsets = {
            runner.label: runner.log.stat().st_size if runner.log.exists() else 0
            for runner in self.runners.values()
        }
        stopping, down, up, alive_while_down = self.restart_database()
        first = self.wait_for(
            "a new send_user_email execution after the restart",
            lambda: self.database.value(
                "SELECT min(e.started_at) FROM maintenance_task_execution e "
                "JOIN maintenance_task t ON t.id = e.maintenance_task_id "
                "WHERE t.nid = %s AND e.started_at > %s",
                (EMAIL_TASK, up),
            ),
            90,
        )
        recovery = seconds(first - up)
        idle_first = self.wait_for(
            "an idle_probe attempt after the restart",
            lambda: next((at for at, _ in self.attempts(IDLE_TASK) if at > up), None),
            60,
        )
        self.wait_stranded_end(up)
        stranded_rows = self.database.rows(
            "SELECT id, hostname, started_at, terminated_at FROM maintenance_task_execution "
            "WHERE terminated_at > %s ORDER BY id",
            (stopping,),
        )
        stranded = len(stranded_rows)
        after_up = [row for row in stranded_rows if row[2] > up]
        for pk, hostname, started_at, terminated_at in after_up[:10]:
            print(
                f"      stranded although dispatched after the restart: execution {pk} on "
                f"{hostname}, started {seconds(started_at - up):+.3f}s after the database was "
                f"back, terminated {seconds(terminated_at - up):+.3f}s"
            )
        # Each runner LISTENs for ended executions on a connection of its own, which
        # must come back too (else freed slots wait out the delays).
        listening, relisten = self.wait_listening(up)
        alive = [runner.label for runner in self.runners.values() if runner.alive]
        errors: dict[str, int] = {}
        for runner in self.runners.values():
            with runner.log.open("rb") as log:
                log.seek(offsets.get(runner.label, 0))
                errors[runner.label] = sum(1 for line in log if b" ERROR " in line)
        silent = [label for label, count in errors.items() if count == 0]
        self.summary["database restart: recovery"] = (
            f"{recovery:.2f}s to the first new execution "
            f"(idle_probe {seconds(idle_first - up):.2f}s)"
        )
        self.record(
            "PostgreSQL restart",
            len(alive_while_down) == 4
            and len(alive) == 4
            and not silent
            and recovery < 60
            and listening == 4,
            f"down {seconds(up - down):.1f}s; runners alive while down {len(alive_while_down)}/4, "
            f"after {len(alive)}/4; error lines logged per runner "
            f"{', '.join(f'{label} {count}' for label, count in sorted(errors.items()))}; "
            f"first new execution {recovery:.2f}s after the database was back, first idle_probe "
            f"attempt {seconds(idle_first - up):.2f}s; {stranded} execution(s) stranded by the "
            f"restart ended through the maximum duration; {listening}/4 runners LISTEN again "
            f"({relisten:.1f}s after the restart)",
        )

    def restart_database(self) -> tuple[datetime, datetime, datetime, list[str]]:
        """Stop PostgreSQL (fast), wait, start it again with the same options.

        Returns when the stop began, when the server was down, when it was up
        again, and the runners alive while it was down.
        """
        options = self.server_options()
        self.database.close()
        stopping = now()
        self.pg_ctl("-m", "fast", "-w", "stop")
        down = now()
        self.say(f"PostgreSQL stopped; down for {DATABASE_DOWN_FOR:g}s")
        time.sleep(DATABASE_DOWN_FOR)
        alive = [runner.label for runner in self.runners.values() if runner.alive]
        self.pg_ctl("-l", str(PGROOT / "server.log"), "-w", "-t", "60", "-o", options, "start")
        up = now()
        self.say(f"PostgreSQL back after {seconds(up - down):.1f}s")
        return stopping, down, up, alive

    def wait_stranded_end(self, up: datetime) -> None:
        """Until housekeeping ended the executions an outage stranded.

        Executions whose receivers met the dead connection stay running until
        their maximum duration; those of the first seconds after the restart
        are waited for too.
        """
        time.sleep(max(0.0, 2.0 - seconds(now() - up)))
        self.wait_for(
            "executions stranded by the restart end",
            lambda: (
                not self.database.value(
                    "SELECT count(*) FROM maintenance_task_execution WHERE ended_at IS NULL "
                    "AND started_at < %s",
                    (up + timedelta(seconds=2),),
                )
            ),
            KILL_MAX_DURATION + 30,
        )

    def wait_listening(self, up: datetime, timeout: float = 45.0) -> tuple[int, float]:
        """Until the four runners LISTEN again; their number and the seconds since ``up``."""
        with contextlib.suppress(TimeoutError):
            self.wait_for("four LISTEN connections", lambda: self.listeners() >= 4, timeout)
        return self.listeners(), seconds(now() - up)

    def scenario_repeated_restarts(self) -> None:
        """More PostgreSQL restarts in a row (full form): the runners LISTEN again each time."""
        delays = []
        alive_counts = []
        for _ in range(self.profile.repeated_restarts):
            _, _, up, alive = self.restart_database()
            listening, relisten = self.wait_listening(up)
            self.say(f"{listening}/4 runners LISTEN again {relisten:.1f}s after the restart")
            delays.append(relisten if listening == 4 else float("inf"))
            alive_counts.append(len(alive))
        self.wait_stranded_end(up)
        alive_counts.append(sum(runner.alive for runner in self.runners.values()))
        self.summary["repeated restarts: LISTEN again after"] = ", ".join(
            f"{delay:.1f}s" for delay in delays
        )
        self.record(
            "repeated PostgreSQL restarts",
            all(delay <= LISTEN_WITHIN for delay in delays) and min(alive_counts) == 4,
            f"{len(delays)} more restarts, {DATABASE_DOWN_FOR:g}s down each: the four runners "
            f"LISTEN again {', '.join(f'{delay:.1f}s' for delay in delays)} after each "
            f"(limit {LISTEN_WITHIN:g}s, as after the first restart); runners alive "
            f"{min(alive_counts)}/4",
        )

    def listeners(self) -> int:
        return self.database.value(
            # A listener's last statement is one of its LISTENs.
            "SELECT count(*) FROM pg_stat_activity WHERE query IN (%s, %s)",
            ("LISTEN django_planton_ended", "LISTEN django_planton_wake"),
        )

    def scenario_sigterm(self) -> None:
        """SIGTERM to every runner while they work: each exits 0 in bounded time; restart."""
        self.ensure_backlog()
        self.wait_for_work()
        runners = list(self.runners.values())
        signalled = now()
        results = self.stop_runners(runners)
        left = self.database.value(
            "SELECT count(*) FROM maintenance_task_execution WHERE ended_at IS NULL "
            "AND hostname = ANY(%s)",
            ([runner.label for runner in runners],),
        )
        times = [elapsed for elapsed, _ in results.values()]
        self.shutdown_times.extend(times)
        codes = [code for _, code in results.values()]
        self.say(f"Stopped {len(runners)} runners {seconds(now() - signalled):.1f}s after SIGTERM")
        self.runner_restarts.append(now())
        self.start_runners()
        self.summary["SIGTERM during work: shutdown"] = ", ".join(
            f"{label} {elapsed:.1f}s" for label, (elapsed, _) in sorted(results.items())
        )
        self.record(
            "SIGTERM during work",
            all(code == 0 for code in codes) and max(times) < SHUTDOWN_LIMIT and left == 0,
            "; ".join(
                f"{label} exit {code} after {elapsed:.2f}s"
                for label, (elapsed, code) in sorted(results.items())
            )
            + f" (limit {SHUTDOWN_LIMIT:g}s); {left} of their executions left running",
        )

    def scenario_drain(self) -> None:
        """Until every account has its e-mail and nothing runs."""
        start = time.monotonic()

        def done() -> bool:
            return self.owed() == 0 and not self.database.value(
                "SELECT count(*) FROM maintenance_task_execution WHERE ended_at IS NULL"
            )

        self.wait_for("every account served", done, self.profile.drain_timeout)
        # Give the restarted runners time to (wrongly) attempt slow_probe again.
        time.sleep(max(0.0, 3.0 - (time.monotonic() - start)))
        self.record(
            "drain",
            True,
            f"all {self.seeded} accounts served, nothing running ({time.monotonic() - start:.1f}s)",
        )

    def scenario_final_stop(self) -> None:
        """SIGTERM once idle: the last shutdown times."""
        results = self.stop_runners(list(self.runners.values()))
        times = [elapsed for elapsed, _ in results.values()]
        self.shutdown_times.extend(times)
        self.summary["SIGTERM at the end: shutdown"] = ", ".join(
            f"{label} {elapsed:.1f}s" for label, (elapsed, _) in sorted(results.items())
        )
        self.record(
            "SIGTERM at the end",
            all(code == 0 for _, code in results.values()) and max(times) < SHUTDOWN_LIMIT,
            "; ".join(
                f"{label} exit {code} after {elapsed:.2f}s"
                for label, (elapsed, code) in sorted(results.items())
            ),
        )

    # -- checks over the whole run ----------------------------------------------

    def executions(self) -> list[Execution]:
        rows = self.database.rows(
            "SELECT e.id, t.nid, e.instruction, e.started_at, e.ended_at, "
            "coalesce(e.hostname, ''), "
            "e.error IS NOT NULL, e.terminated_at, e.terminated_reason "
            "FROM maintenance_task_execution e JOIN maintenance_task t "
            "ON t.id = e.maintenance_task_id"
        )
        return [Execution(*row) for row in rows]

    def checks_over_the_run(self) -> None:
        executions = self.executions()
        email = [execution for execution in executions if execution.task == EMAIL_TASK]
        self.check_no_overlap(executions)
        self.check_accounts(email)
        self.check_concurrency(email)
        self.check_cadence(executions)
        self.count_cycles(email)

    def count_cycles(self, email: list[Execution]) -> None:
        """How many cycles committed (row updates of maintenance_task) for how many batches."""
        time.sleep(1.0)  # the statistics of the last backends reach the collector
        updates = self.database.value(
            "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'maintenance_task'"
        )
        batches = len({(execution.hostname, execution.started_at) for execution in email})
        self.summary["maintenance_task row updates"] = (
            f"{updates} (~ committed cycles) for {batches} dispatching cycles of send_user_email"
        )

    def check_no_overlap(self, executions: list[Execution]) -> None:
        by_instruction: dict[tuple[str, str], list[Execution]] = defaultdict(list)
        for execution in executions:
            by_instruction[(execution.task, execution.instruction)].append(execution)
        overlaps = []
        for items in by_instruction.values():
            items.sort(key=lambda execution: (execution.started_at, execution.id))
            for first, second in itertools.pairwise(items):
                if first.ended_at is None or first.ended_at > second.started_at:
                    overlaps.append((first, second))
        running = [execution for execution in executions if execution.ended_at is None]
        per_task = Counter(execution.task for execution in executions)
        tasks = ", ".join(f"{task} {count}" for task, count in sorted(per_task.items()))
        self.summary["instructions dispatched"] = f"{len(executions)} ({tasks})"
        self.summary["dispatched twice while active"] = str(len(overlaps))
        for first, second in overlaps[:10]:
            print(
                f"      overlap: {first.task} {first.instruction!r}: execution {first.id} "
                f"[{first.started_at.isoformat()}, {first.ended_at}) on {first.hostname}, "
                f"execution {second.id} from {second.started_at.isoformat()} on {second.hostname}"
            )
        self.record(
            "nothing dispatched twice",
            not overlaps and not running,
            f"{len(executions)} executions of {len(by_instruction)} distinct instructions; "
            f"{len(overlaps)} overlapping pairs; {len(running)} still running at the end",
        )

    def check_accounts(self, email: list[Execution]) -> None:
        accounts = self.database.rows(
            "SELECT id, email, email_sent_at IS NOT NULL FROM accounts_useraccount "
            "WHERE deleted_at IS NULL"
        )
        unserved = [account_id for account_id, _, sent in accounts if not sent]
        by_account: dict[str, list[Execution]] = defaultdict(list)
        for execution in email:
            by_account[execution.instruction].append(execution)
        mails: Counter = Counter()
        for path in (WORK / "mail").glob("*.sent"):
            mails.update(line for line in path.read_text().splitlines() if line)
        successes = Counter()
        for account_id, _, _ in accounts:
            successes[sum(execution.succeeded for execution in by_account[str(account_id)])] += 1
        executions_per_account = Counter(
            len(by_account[str(account_id)]) for account_id, *_ in accounts
        )
        mails_per_account = Counter(mails[address] for _, address, _ in accounts)
        faulted = {
            account_id
            for account_id, items in by_account.items()
            if any(execution.failed or execution.terminated_at for execution in items)
        }
        unexplained = [
            account_id
            for account_id, address, _ in accounts
            if mails[address] > 1 and str(account_id) not in faulted
        ]
        unmailed = [account_id for account_id, address, _ in accounts if mails[address] == 0]
        not_once = {count: n for count, n in successes.items() if count != 1}
        killed_served = [
            instruction
            for instruction in self.killed_instructions
            if any(
                execution.succeeded and execution.hostname != self.killed_label
                for execution in by_account[instruction]
            )
        ]
        strangers = set(mails) - {address for _, address, _ in accounts}
        self.summary["accounts served"] = f"{len(accounts) - len(unserved)}/{len(accounts)}"
        self.summary["e-mails per account"] = ", ".join(
            f"{count}x: {n}" for count, n in sorted(mails_per_account.items())
        )
        self.record(
            "every account processed",
            not unserved and not not_once and len(killed_served) == len(self.killed_instructions),
            f"{len(accounts)} accounts, {len(unserved)} without email_sent_at; executions per "
            f"account {dict(sorted(executions_per_account.items()))}; accounts with exactly one "
            f"successful execution {successes[1]} (other counts: {not_once or 'none'}); "
            f"{len(killed_served)}/{len(self.killed_instructions)} accounts of the killed runner "
            "served by another one",
        )
        self.record(
            "every account e-mailed",
            not unmailed and not unexplained and not strangers,
            f"e-mails per account {dict(sorted(mails_per_account.items()))}; {len(unmailed)} "
            f"never e-mailed; {len(unexplained)} e-mailed more than once without a failed or "
            f"terminated execution (at-least-once delivery allows a second e-mail only then); "
            f"{len(strangers)} e-mails to unknown addresses",
        )

    def check_concurrency(self, email: list[Execution]) -> None:
        # After the fact: sweep the start and end times; at each start, the executions
        # running (itself included) must not exceed the limit in force at that moment.
        events: list[tuple[datetime, int]] = []
        for execution in email:
            events.append((execution.started_at, 1))
            if execution.ended_at is not None:
                events.append((execution.ended_at, 0))  # ends sort before starts
        events.sort()
        running = highest = 0
        violations: list[tuple[datetime, int, int]] = []
        for moment, group in itertools.groupby(events, key=lambda event: event[0]):
            kinds = [kind for _, kind in group]
            running += sum(1 if kind else -1 for kind in kinds)
            if any(kinds):
                highest = max(highest, running)
                limit = self.limit_at(moment)
                if running > limit:
                    violations.append((moment, running, limit))
        samples = self.sampler.samples if self.sampler else []
        sampled_violations = [
            sample
            for sample in samples
            if sample.running > sample.limit
            and not any(
                lowered <= sample.at <= lowered + timedelta(seconds=OVERRIDE_GRACE)
                for lowered in self.lowered_at
            )
        ]
        sampled_max = max((sample.running for sample in samples), default=-1)
        declared = self.limits[0][1] if self.limits else 0
        span = (
            seconds(samples[-1].at - samples[0].at) / max(1, len(samples) - 1) if samples else 0.0
        )
        self.summary["max concurrency: sampled / swept"] = (
            f"{sampled_max} / {highest} (limit {declared}, {OVERRIDE} under the override)"
        )
        for moment, count, limit in violations[:10]:
            print(f"      over the limit: {count} running at {moment.isoformat()} (limit {limit})")
        for sample in sampled_violations[:10]:
            print(
                f"      sampled over the limit: {sample.running} at {sample.at.isoformat()} "
                f"(limit {sample.limit})"
            )
        self.record(
            "concurrency (sampled)",
            bool(samples) and not sampled_violations,
            f"{len(samples)} samples, one every {span * 1000:.0f} ms on average, "
            f"{self.sampler.failures if self.sampler else 0} failed (database down); max "
            f"{sampled_max} running, limit {declared}; {len(sampled_violations)} samples above "
            "the limit outside the grace period after lowering it",
        )
        self.record(
            "concurrency (swept)",
            not violations,
            f"max {highest} running at a start over {len(email)} executions; "
            f"{len(violations)} starts above the limit in force",
        )

    def short_gaps(self, events: list[tuple[datetime, str]], what: str) -> list[float]:
        """Gaps between consecutive attempts shorter than 0.9 delay; prints the first few."""
        short = []
        for (first, by_first), (second, by_second) in itertools.pairwise(events):
            gap = seconds(second - first)
            if gap < IDLE_DELAY * 0.9:
                if len(short) < 5:
                    print(
                        f"      {what}: attempts {gap:.3f}s apart: {by_first} at "
                        f"{first.time().isoformat()}, {by_second} at {second.time().isoformat()}"
                    )
                short.append(gap)
        return short

    def check_cadence(self, executions: list[Execution]) -> None:
        idle = self.attempts(IDLE_TASK)
        gaps = [seconds(b[0] - a[0]) for a, b in itertools.pairwise(idle)]
        short = self.short_gaps(idle, IDLE_TASK)
        by_runner = Counter(runner.split(".")[0] for _, runner in idle)
        self.record(
            "idle_probe gaps",
            bool(idle) and not short,
            f"{len(idle)} attempts over the run by {dict(sorted(by_runner.items()))}; shortest "
            f"gap {min(gaps, default=float('nan')):.3f}s, {len(short)} shorter than "
            f"{IDLE_DELAY * 0.9:g}s",
        )
        bad = self.attempts(BAD_TASK, "schedule_failed")
        bad_gaps = [seconds(b[0] - a[0]) for a, b in itertools.pairwise(bad)]
        details = [
            detail
            for (detail,) in self.database.rows(
                "SELECT detail FROM stress_probe_event WHERE kind = 'schedule_failed'"
            )
        ]
        kinds = Counter(detail.split(":")[0] for detail in details)
        reasons = {detail.rsplit("instructions: ", 1)[-1][:25] for detail in details}
        bad_executions = sum(execution.task == BAD_TASK for execution in executions)
        self.record(
            "bad input never dispatched",
            bad_executions == 0 and len(reasons) >= 5,
            f"{len(bad)} failed attempts of bad_input_probe ({dict(sorted(kinds.items()))}, "
            f"{len(reasons)} different reasons); {bad_executions} executions",
        )
        bad_short = self.short_gaps(bad, BAD_TASK)
        self.summary["bad_input_probe attempts < 0.9s apart"] = str(len(bad_short))
        self.record(
            "bad_input_probe gaps",
            bool(bad) and not bad_short,
            f"shortest gap between failed attempts {min(bad_gaps, default=float('nan')):.3f}s, "
            f"{len(bad_short)} of {len(bad_gaps)} shorter than {IDLE_DELAY * 0.9:g}s "
            f"(delay {IDLE_DELAY:g}s; a failed attempt must push next_attempt_at for every runner)",
        )
        slow = [at for at, _ in self.attempts(SLOW_TASK)]
        slow_gaps = [seconds(b - a) for a, b in itertools.pairwise(slow)]
        restarts_in_reach = [
            at
            for at in self.runner_restarts
            if slow and slow[0] < at < slow[0] + timedelta(seconds=SLOW_DELAY)
        ]
        self.summary["slow_probe attempts"] = (
            f"{len(slow)} (restarts within its delay: {len(restarts_in_reach) + 1})"
        )
        self.record(
            "slow_probe after restarts",
            bool(slow)
            and all(gap >= SLOW_DELAY - 1 for gap in slow_gaps)
            and bool(restarts_in_reach),
            f"{len(slow)} attempt(s) in the run; all four runners restarted "
            f"{len(restarts_in_reach)} time(s), and r1 after its kill, within {SLOW_DELAY:g}s of "
            f"the first attempt; gaps {[round(gap, 1) for gap in slow_gaps] or 'none'} "
            f"(each must be >= {SLOW_DELAY - 1:g}s)",
        )

    # -- the summary -----------------------------------------------------------

    def print_summary(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.shutdown_times:
            self.summary["shutdown after SIGTERM (max)"] = f"{max(self.shutdown_times):.2f}s"
        self.summary["accounts seeded"] = str(self.seeded)
        self.summary["duration"] = f"{elapsed:.0f}s ({self.profile.name})"
        width = max((len(key) for key in self.summary), default=10)
        print()
        print("Summary")
        print("-" * 78)
        for key, value in self.summary.items():
            print(f"  {key:<{width}}  {value}")
        print("-" * 78)
        for check in self.checks:
            print(f"  {'PASS' if check.ok else 'FAIL'}  {check.name}")
        failed = [check for check in self.checks if not check.ok]
        print("-" * 78)
        print(f"  {'FAILED: ' + str(len(failed)) + ' check(s)' if failed else 'ALL PASSED'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI form: smaller, < 3 minutes")
    parser.add_argument("--accounts", type=int, help="accounts seeded before the runners start")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    if args.accounts:
        profile = replace(profile, accounts=args.accounts)
    return Stress(profile).run()


if __name__ == "__main__":
    sys.exit(main())
