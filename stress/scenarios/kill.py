"""kill -9 of a runner in the middle of its work: its executions end through the maximum duration.

The runner is made to hang inside its executions first (the flag file
``hang-r1``, obeyed by the stress app's receiver before it sends anything),
so that it is certainly killed with executions running.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from stress import database
from stress.config import KILL_MAX_DURATION, WORK
from stress.records import now
from stress.results import KillResult
from stress.stage import Stage, wait_for


def kill(stage: Stage) -> KillResult:
    """Kill r1 while it hangs in executions; wait for them to end; start r1 again."""
    db = stage.db
    stage.ensure_backlog()
    database.set_maximum_duration(db, timedelta(seconds=KILL_MAX_DURATION))
    victim = stage.fleet.runners["r1"]
    flag = WORK / "hang-r1"
    flag.touch()
    try:

        def victim_hangs() -> int:
            # Which runner wins a cycle is not promised: keep work waiting
            # until the victim has won one, or the others drain it all.
            stage.ensure_backlog()
            return database.hanging_count(db, victim.label)

        wait_for(f"{victim.label} hangs in an execution", victim_hangs, 60)
        victim.process.kill()
        killed = now()
        victim.process.wait(timeout=10)
    finally:
        flag.unlink(missing_ok=True)
    stuck = database.running_of(db, victim.label)
    ids = [pk for pk, _ in stuck]
    instructions = tuple(instruction for _, instruction in stuck)
    stage.say(f"Killed {victim.label} (exit {victim.process.returncode}) with {len(ids)} running")
    wait_for(
        "the killed runner's executions end",
        lambda: ids and not database.still_running(db, ids),
        KILL_MAX_DURATION + 30,
    )
    ended = tuple(database.ended_executions(db, ids))
    with contextlib.suppress(TimeoutError):
        wait_for(
            "execution_terminated receivers",
            lambda: database.terminated_signals(db, ids) >= len(ids),
            20,
        )
    signalled = database.terminated_signals(db, ids)
    events = tuple(database.terminated_events_near(db, killed)) if signalled < len(ids) else ()
    logged = stage.grep_logs(
        [f"Welcome e-mail to account {instruction} gave up" for instruction in instructions]
    )
    stage.fleet.start(["r1"])
    return KillResult(
        label=victim.label,
        exit_code=victim.process.returncode,
        killed=killed,
        instructions=instructions,
        ended=ended,
        signalled=signalled,
        logged=logged,
        events=events,
    )
