"""What an operator does in the admin: pause tasks, lower a task's concurrency."""

from __future__ import annotations

import time
from datetime import timedelta

from stress import database
from stress.config import EMAIL_TASK, IDLE_TASK, OVERRIDE, OVERRIDE_GRACE
from stress.records import now, seconds
from stress.results import LimitChange, OverrideResult, PauseResult
from stress.stage import Stage, wait_for


def pause(stage: Stage) -> PauseResult:
    """Pause send_user_email and idle_probe while they work, watch, unpause."""
    db = stage.db
    paused_tasks = (EMAIL_TASK, IDLE_TASK)
    stage.ensure_backlog()
    stage.wait_for_work()
    database.set_paused(db, paused_tasks, True)
    paused = now()
    time.sleep(stage.profile.pause_watch)
    watched = now()
    owed = database.owed(db)
    database.set_paused(db, paused_tasks, False)
    resumed = now()
    last_start = database.last_start_until(db, EMAIL_TASK, watched)
    assert last_start is not None, "send_user_email was at work before the pause"
    first_after = wait_for(
        "send_user_email resumes",
        lambda: database.first_start_after(db, EMAIL_TASK, resumed),
        15,
    )
    return PauseResult(
        paused=paused,
        watched=watched,
        watch=stage.profile.pause_watch,
        owed=owed,
        email_starts=tuple(database.starts_between(db, EMAIL_TASK, paused, watched)),
        last_start=last_start,
        idle_attempts=tuple(at for at, _ in database.attempts(db, IDLE_TASK) if at <= watched),
        resumed_after=seconds(first_after - resumed),
    )


def _change_limit(stage: Stage, value: int) -> tuple[LimitChange, bool]:
    """Set the override; the limit now in force, since when, and whether it was lowered.

    A higher limit may be used from the moment the UPDATE is sent; a lower one
    binds from its commit on (a cycle that read the old one held the row).
    """
    previous = database.effective_limit(stage.db)
    before = now()
    database.set_override(stage.db, value)
    after = now()
    limit = database.effective_limit(stage.db)
    lowered = limit < previous
    return ((after if lowered else before), limit), lowered


def override(stage: Stage) -> OverrideResult:
    """Set send_user_email's concurrency override to 2 while it works, watch, reset it."""
    stage.ensure_backlog()
    stage.wait_for_work()
    lowering, lowering_lowered = _change_limit(stage, OVERRIDE)
    lowered = lowering[0]
    time.sleep(stage.profile.override_watch)
    end = now()
    restoring, restoring_lowered = _change_limit(stage, 0)
    grace_end = lowered + timedelta(seconds=OVERRIDE_GRACE)
    changes = ((lowering, lowering_lowered), (restoring, restoring_lowered))
    return OverrideResult(
        changes=(lowering, restoring),
        lowered_at=tuple(at for (at, _), was_lowered in changes if was_lowered),
        within_grace=tuple(sample.running for sample in stage.sampler.window(lowered, grace_end)),
        after_grace=tuple(sample.running for sample in stage.sampler.window(grace_end, end)),
        starts=len(database.starts_between(stage.db, EMAIL_TASK, lowered, end)),
    )
