"""Four runners, undisturbed: the throughput and the shared cadence of the probes."""

from __future__ import annotations

import time

from stress import database
from stress.config import ALL_TASKS, BAD_TASK, IDLE_TASK, SLOW_TASK
from stress.records import now
from stress.results import SteadyResult
from stress.stage import Stage, wait_for


def steady(stage: Stage) -> SteadyResult:
    """Start the runners, then let them work for the profile's steady stretch."""
    db = stage.db
    stage.fleet.start()
    wait_for("task rows", lambda: database.task_rows_present(db, ALL_TASKS) == len(ALL_TASKS), 30)
    limit = database.effective_limit(db)
    start = now()
    sent_before = database.sent_count(db)
    time.sleep(stage.profile.steady)
    end = now()
    sent = database.sent_count(db) - sent_before
    result = SteadyResult(
        start=start,
        end=end,
        sent=sent,
        idle_attempts=sum(start <= at <= end for at, _ in database.attempts(db, IDLE_TASK)),
        bad_attempts=sum(
            start <= at <= end for at, _ in database.attempts(db, BAD_TASK, "schedule_failed")
        ),
        slow_attempts=len(database.attempts(db, SLOW_TASK)),
        limit=limit,
    )
    stage.say(f"{sent} e-mails in {result.length:.1f}s ({sent / result.length:.0f}/s)")
    return result
