"""Reading, once at the end, everything the checks over the whole run judge.

What earlier scenarios learned (the limit timeline, the killed runner's
work, when the runners were restarted) comes from their frozen results;
the rest from the database, the sent-mail records and the sampler.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TypeVar

from stress import database
from stress.config import BAD_TASK, IDLE_TASK, SLOW_TASK, WORK
from stress.results import (
    Evidence,
    FaultResult,
    KillResult,
    OverrideResult,
    RepeatedRestartsResult,
    RestartResult,
    ShutdownResult,
    SteadyResult,
    Window,
)
from stress.stage import Stage

R = TypeVar("R")
#: Before any moment of the run: where the declared limit starts to be in force.
BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)


def result_of(results: Mapping[str, object], name: str, kind: type[R]) -> R | None:
    """The result of scenario ``name``, or None when it did not get that far."""
    result = results.get(name)
    return result if isinstance(result, kind) else None


def sent_mails() -> Counter[str]:
    """E-mails per address, over every process's record (killed ones included)."""
    mails: Counter[str] = Counter()
    for path in (WORK / "mail").glob("*.sent"):
        mails.update(line for line in path.read_text().splitlines() if line)
    return mails


def outages(results: Mapping[str, object]) -> tuple[Window, ...]:
    """When the runners had no database: each restart, the refusing and the silent windows."""
    windows: list[Window] = []
    restart = result_of(results, "database_restart", RestartResult)
    if restart:
        windows.append((restart.outage.stopping, restart.outage.up))
    repeated = result_of(results, "repeated_restarts", RepeatedRestartsResult)
    if repeated:
        windows += [(outage.stopping, outage.up) for outage in repeated.outages]
    for name in ("refusing_database", "unanswering_database"):
        fault = result_of(results, name, FaultResult)
        if fault:
            windows.append((fault.began, fault.recovered))
    return tuple(windows)


def stalls(results: Mapping[str, object]) -> tuple[Window, ...]:
    """When the database held the runners' statements without answering."""
    fault = result_of(results, "unanswering_database", FaultResult)
    return ((fault.began, fault.recovered),) if fault else ()


def gather(stage: Stage, results: Mapping[str, object]) -> Evidence:
    db = stage.db
    steady = result_of(results, "steady", SteadyResult)
    override = result_of(results, "override", OverrideResult)
    kill = result_of(results, "kill", KillResult)
    sigterm = result_of(results, "sigterm", ShutdownResult)
    declared = steady.limit if steady else database.effective_limit(db)
    ended = database.now(db)  # every runner has stopped: nothing is stored after this
    return Evidence(
        executions=tuple(database.executions(db)),
        accounts=tuple(database.accounts(db)),
        mails=tuple(sent_mails().items()),
        idle_attempts=tuple(database.attempts(db, IDLE_TASK)),
        bad_attempts=tuple(database.attempts(db, BAD_TASK, "schedule_failed")),
        failure_details=tuple(database.schedule_failure_details(db)),
        slow_attempts=tuple(at for at, _ in database.attempts(db, SLOW_TASK)),
        samples=tuple(stage.sampler.samples),
        sampler_failures=stage.sampler.failures,
        limits=((BEGINNING, declared), *(override.changes if override else ())),
        lowered_at=override.lowered_at if override else (),
        killed_label=kill.label if kill else "",
        killed_instructions=kill.instructions if kill else (),
        restarts=(sigterm.restarted_at,) if sigterm and sigterm.restarted_at else (),
        ahead=tuple(stage.sampler.ahead),
        cut_short=tuple(database.cut_short(db)),
        late_starts=tuple(database.late_starts(db)),
        began=stage.began,
        ended=ended,
        outages=outages(results),
        stalls=stalls(results),
        # Last (arguments are evaluated in order): after everything else was read.
        task_row_updates=row_updates_settled(stage),
    )


def row_updates_settled(stage: Stage) -> int:
    """maintenance_task's row updates, once the last backends' statistics are in."""
    time.sleep(1.0)  # the statistics of the last backends reach the collector
    return database.task_row_updates(stage.db)
