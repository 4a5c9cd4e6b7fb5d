#!/usr/bin/env python
"""Stress run of django-planton: many runners, faults and bad input; nothing lost or run twice.

    .venv/bin/python stress/run.py            # full form (>= 5,000 accounts, a few minutes)
    .venv/bin/python stress/run.py --quick    # CI form (1,500 accounts, under 3 minutes)

Starts a throwaway PostgreSQL (``scripts/postgres.py``, port ``PLANTON_PGPORT``,
54349 by default), migrates, seeds accounts, and runs four ``manage.py
run_planton`` processes with ``stress.settings``, two of them with their wall
clock ten minutes off (``r3`` ahead, ``r4`` behind; ``scripts/clockshift.py``).
Then, one after the other: steady work, an operator's pause, an operator's
concurrency override, a ``kill -9`` of a runner in the middle of its work, a
PostgreSQL restart, a schedule that blocks in the database, a database that
refuses connections and one that stops answering (the runners reach
PostgreSQL through a relay the run controls), the runners behind PgBouncer,
and a SIGTERM of every runner during work. Each scenario
prints PASS or FAIL with its figures; the checks over the whole run (no
instruction dispatched twice, every account served, concurrency, cadence,
times on the database's clock) come last, then a summary table. Exits 1 when
any check fails. PostgreSQL and every process it started are
stopped on the way out, whatever happens. ``stress/README.md`` explains each line.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, only stress/ is on the path: the repository root makes
# ``stress`` and ``scripts`` importable as packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import functools
import signal
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any, Generic, TypeVar

from stress import checks, evidence, scenarios
from stress.checks import Findings
from stress.config import FULL, KNOWN_ISSUES, QUICK, Profile
from stress.report import Report
from stress.results import ShutdownResult
from stress.stage import Stage, staged

R = TypeVar("R")


class Interrupted(Exception):
    """SIGTERM or SIGINT reached the stress run itself."""


@dataclass(frozen=True)
class Step(Generic[R]):
    """A scenario and the check that judges its result."""

    name: str  # printed as ``== name``; also the name of the check when the scenario raises
    play: Callable[[Stage], R]
    judge: Callable[[R], Findings]
    revive: bool = True  # when it raises, start dead runners again for the next step


STEPS: tuple[Step[Any], ...] = (
    Step("steady", scenarios.steady, checks.steady),
    Step("pause", scenarios.pause, checks.pause),
    Step("override", scenarios.override, checks.override),
    Step("kill", scenarios.kill, checks.kill),
    Step("database_restart", scenarios.database_restart, checks.database_restart),
    Step("repeated_restarts", scenarios.repeated_restarts, checks.repeated_restarts),
    Step("blocked_schedule", scenarios.blocked_schedule, checks.blocked_schedule),
    Step("refusing_database", scenarios.refusing_database, checks.relay_fault),
    Step("unanswering_database", scenarios.unanswering_database, checks.relay_fault),
    Step("pooler", scenarios.pooler, checks.pooler),
    Step("sigterm", scenarios.sigterm, checks.sigterm_during_work),
    Step("drain", scenarios.drain, checks.drain),
    Step("final_stop", scenarios.final_stop, checks.sigterm_at_end, revive=False),
)


def guarded(report: Report, name: str, action: Callable[[], None]) -> bool:
    """Run one step; an error fails the check ``name`` and the run goes on. False if it raised."""
    report.say(f"== {name}")
    try:
        action()
    except Interrupted:
        raise
    except Exception as error:
        traceback.print_exc()
        report.show(checks.failure(name, f"{type(error).__name__}: {error}"))
        return False
    return True


def play_step(step: Step[Any], stage: Stage, report: Report, results: dict[str, object]) -> None:
    """One scenario, then its check; its result is kept for the checks over the whole run."""
    results[step.name] = result = step.play(stage)
    report.show(step.judge(result))


def play(stage: Stage, report: Report, results: dict[str, object]) -> None:
    """Every scenario in turn, then the checks over the whole run."""
    for step in STEPS:
        if step.name == "repeated_restarts" and not stage.profile.repeated_restarts:
            continue
        action = functools.partial(play_step, step, stage, report, results)
        if not guarded(report, step.name, action) and step.revive:
            stage.fleet.revive()
    stage.sampler.stop()

    def judge_the_run() -> None:
        for findings in checks.over_the_run(evidence.gather(stage, results)):
            report.show(findings)

    guarded(report, "over_the_run", judge_the_run)


def run(profile: Profile) -> int:
    """The whole run; its exit status."""
    report = Report()
    results: dict[str, object] = {}  # each scenario's result, by step name
    seeded = 0

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with staged(profile, report.say) as stage:
            try:
                play(stage, report, results)
            finally:
                seeded = stage.seeded
    except Interrupted as error:
        report.show(checks.failure("run", f"interrupted by {error}"))
    except Exception as error:
        traceback.print_exc()
        report.show(checks.failure("run", f"{type(error).__name__}: {error}"))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    shutdowns = [
        elapsed
        for result in results.values()
        if isinstance(result, ShutdownResult)
        for _, elapsed, _ in result.exits
    ]
    report.summary["known library issues tolerated"] = ", ".join(sorted(KNOWN_ISSUES)) or "none"
    report.print_summary(profile.name, seeded, shutdowns)
    return 0 if report.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI form: smaller, < 3 minutes")
    parser.add_argument("--accounts", type=int, help="accounts seeded before the runners start")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    if args.accounts:
        profile = replace(profile, accounts=args.accounts)
    return run(profile)


if __name__ == "__main__":
    sys.exit(main())
