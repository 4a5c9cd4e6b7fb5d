"""The runner processes: starting, readiness, signals, and ``manage.py`` for set-up commands.

A runner is named ``r1`` to ``r4``; each start of one is a new generation,
labelled ``r2.g1``, ``r2.g2``... The label is the process's ``STRESS_RUNNER``,
hence the ``hostname`` of its executions and the name of its log files. Every
process ever started is kept, so that none outlives the run.

The runners of ``CLOCK_SHIFTS`` (``r3``, ``r4``), every generation of them,
run with their wall clock shifted by ``scripts/clockshift.py``'s library.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scripts import clockshift
from stress.config import CLOCK_SHIFTS, MANAGE, ROOT, RUNNER_NAMES, SHUTDOWN_LIMIT, WORK, clock_note
from stress.records import Exit


def process_env(database_url: str, label: str, hang_name: str | None = None) -> dict[str, str]:
    """The environment of a ``manage.py`` process of the run (see ``stress/settings.py``)."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="stress.settings",
        DATABASE_URL=database_url,
        EMAIL_URL="memorymail://",
        STRESS_DIR=str(WORK),
        STRESS_RUNNER=label,
        STRESS_HANG_NAME=hang_name or label,
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(database_url: str, *args: str, timeout: float = 300) -> str:
    """Run a set-up command (``migrate``, ``seed_accounts``) to its end; its stdout."""
    result = subprocess.run(
        [sys.executable, str(MANAGE), *args],
        cwd=ROOT,
        env=process_env(database_url, "setup"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result.stdout


@dataclass
class RunnerProcess:
    name: str  # r1..r4
    generation: int
    process: subprocess.Popen[bytes]
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


@dataclass
class Fleet:
    """The four runners of the moment, and every process ever started."""

    database_url: str  # where the runners started from now on connect
    say: Callable[[str], None]
    #: The clock-shift library the skewed runners preload (built once per run).
    clock_library: Path | None = None
    #: More environment for the runners started from now on (``STRESS_LISTEN_URL``).
    extra_env: dict[str, str] = field(default_factory=dict)
    runners: dict[str, RunnerProcess] = field(default_factory=dict)
    every_process: list[RunnerProcess] = field(default_factory=list)
    generations: Counter[str] = field(default_factory=Counter)

    def current(self) -> list[RunnerProcess]:
        return list(self.runners.values())

    def alive_labels(self) -> list[str]:
        return [runner.label for runner in self.runners.values() if runner.alive]

    def start(self, names: Iterable[str] = RUNNER_NAMES) -> list[RunnerProcess]:
        """Start a new generation of the runners named, and wait until each schedules."""
        started = [self._start_one(name) for name in names]
        self._wait_ready(started)
        return started

    def _start_one(self, name: str) -> RunnerProcess:
        self.generations[name] += 1
        generation = self.generations[name]
        label = f"{name}.g{generation}"
        env = process_env(self.database_url, label, hang_name=name) | self.extra_env
        if name in CLOCK_SHIFTS:
            env = clockshift.shifted_env(CLOCK_SHIFTS[name], env, library=self.clock_library)
        with (WORK / "logs" / f"{label}.out").open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, str(MANAGE), "run_planton", "--shutdown-timeout", "30"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C of the stress run reaches it only through us
            )
        runner = RunnerProcess(name, generation, process, time.monotonic())
        self.runners[name] = runner
        self.every_process.append(runner)
        return runner

    def _wait_ready(self, runners: Sequence[RunnerProcess], timeout: float = 90.0) -> None:
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
        self.say(f"Runners up: {', '.join(r.label + clock_note(r.label) for r in runners)}")

    def stop(
        self, runners: Sequence[RunnerProcess], sig: signal.Signals = signal.SIGTERM
    ) -> tuple[Exit, ...]:
        """Signal the runners at once; per label, seconds until exit and the exit code, sorted.

        One that is not gone 10 s after the shutdown limit is killed, its code None.
        """
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
        return tuple((label, elapsed, code) for label, (elapsed, code) in sorted(results.items()))

    def revive(self) -> None:
        """After a failed scenario: get back to four live runners for the next one."""
        (WORK / "hang-r1").unlink(missing_ok=True)
        dead = [
            name
            for name in RUNNER_NAMES
            if name not in self.runners or not self.runners[name].alive
        ]
        if dead:
            self.say(f"Restarting runner(s) {', '.join(dead)}")
            self.start(dead)

    def stop_everything(self) -> None:
        """SIGTERM to every process still alive; SIGKILL to those not gone 15 s later."""
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

    def left_alive(self) -> list[str]:
        return [runner.label for runner in self.every_process if runner.alive]
