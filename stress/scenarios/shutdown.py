"""SIGTERM to the runners, during work and at the end, and the drain in between."""

from __future__ import annotations

import time

from stress import database
from stress.records import now, seconds
from stress.results import DrainResult, ShutdownResult
from stress.stage import Stage, wait_for


def sigterm(stage: Stage) -> ShutdownResult:
    """SIGTERM to every runner while they work; then four new ones (slow_probe must survive)."""
    stage.ensure_backlog()
    stage.wait_for_work()
    runners = stage.fleet.current()
    signalled = now()
    exits = stage.fleet.stop(runners)
    left = database.running_count(stage.db, [runner.label for runner in runners])
    stage.say(f"Stopped {len(runners)} runners {seconds(now() - signalled):.1f}s after SIGTERM")
    restarted_at = now()
    stage.fleet.start()
    return ShutdownResult(exits=exits, left=left, restarted_at=restarted_at)


def drain(stage: Stage) -> DrainResult:
    """Until every account has its e-mail and nothing runs."""
    start = time.monotonic()

    def done() -> bool:
        return database.owed(stage.db) == 0 and not database.running_count(stage.db)

    wait_for("every account served", done, stage.profile.drain_timeout)
    # Give the restarted runners time to (wrongly) attempt slow_probe again.
    time.sleep(max(0.0, 3.0 - (time.monotonic() - start)))
    return DrainResult(seeded=stage.seeded, took=time.monotonic() - start)


def final_stop(stage: Stage) -> ShutdownResult:
    """SIGTERM once idle: the last shutdown times."""
    runners = stage.fleet.current()
    exits = stage.fleet.stop(runners)
    return ShutdownResult(exits=exits, left=None, restarted_at=None)
