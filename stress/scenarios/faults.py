"""Faults that leave the runners alive but stuck: a schedule that blocks, a database gone quiet.

- a schedule blocks in the database for the profile's window (20 s; 7 s in
  ``--quick``): ``blocking_probe``'s schedule sits in ``SELECT pg_sleep``
  while the flag file :data:`~stress.config.BLOCK_FLAG` names a time ahead;
- the database refuses connections for the window: the stage's relay closes
  its port and cuts every open connection (what a server that is down looks
  like), then forwards again;
- the database stops answering for the window: the relay accepts and holds
  everything, both ways, then delivers it.

Only the runners go through the relay; the stress run watches from its own,
direct connections meanwhile. Every scenario here comes after the kill
scenario, so ``send_user_email``'s maximum duration is 3 s: an execution
that cannot end during the window is terminated once the runners reach the
database again.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from datetime import datetime, timedelta

from scripts.relay import Mode
from stress import database, logs
from stress.config import (
    BAD_TASK,
    BLOCK_FLAG,
    BLOCKING_TASK,
    EMAIL_TASK,
    ENDED_WITHIN,
    IDLE_TASK,
    MAX_WAIT,
    RESUME_SLACK,
    SLOW_CYCLE_TEXT,
    SLOW_CYCLE_WARNING,
)
from stress.records import Attempt, seconds
from stress.results import BlockedResult, FaultResult, Held
from stress.stage import Stage, wait_for

WATCH_EVERY = 0.25  # seconds between two looks at the database or the runners during a window


def blocked_schedule(stage: Stage) -> BlockedResult:
    """blocking_probe blocks in the database for the window; the other quiet tasks go on."""
    db = stage.db
    stage.ensure_backlog()
    stage.wait_for_work()
    offsets = stage.log_offsets()
    sent_before = database.sent_count(db)
    locks = database.enable_row_locks(db)
    start = database.now(db)
    end = start + timedelta(seconds=stage.profile.fault_window)
    write_flag(end)
    try:
        blocked_for, held = watch_sleeping(stage, end, locks=locks)
    finally:
        BLOCK_FLAG.unlink(missing_ok=True)
    sent = database.sent_count(db) - sent_before
    with contextlib.suppress(TimeoutError):
        wait_for("blocking_probe's schedule returns", lambda: not database.sleeping(db), 10)
    time.sleep(1.0)  # the watchdog's "ended after" line, and the attempts of the last second
    texts = stage.logs_between(offsets)
    holding = ", ".join(f"{task} {held_for:.1f}s" for task, held_for in held or ())
    stage.say(
        f"blocking_probe was seen in pg_sleep for {blocked_for:.1f}s of the window; its "
        f"transaction held the rows of {holding or 'nothing seen'}"
    )
    return BlockedResult(
        start=start,
        end=end,
        attempts=(
            (IDLE_TASK, within(database.attempts(db, IDLE_TASK), start, end)),
            (BAD_TASK, within(database.attempts(db, BAD_TASK, "schedule_failed"), start, end)),
        ),
        blocked_for=blocked_for,
        held=held,
        slow_warnings=logs.matching(texts, BLOCKING_TASK, SLOW_CYCLE_TEXT),
        threshold=SLOW_CYCLE_WARNING,
        sent=sent,
    )


def within(attempts: list[Attempt], start: datetime, end: datetime) -> tuple[datetime, ...]:
    return tuple(at for at, _ in attempts if start <= at <= end)


def write_flag(until: datetime) -> None:
    """Tell blocking_probe's schedule to block until ``until`` (written whole, then renamed)."""
    partial = BLOCK_FLAG.with_suffix(".partial")
    partial.write_text(until.isoformat())
    partial.replace(BLOCK_FLAG)


def watch_sleeping(stage: Stage, end: datetime, *, locks: bool) -> tuple[float, Held | None]:
    """Until the database's ``end``: how long blocking_probe was seen in pg_sleep, and for
    how long its transaction was seen holding each task row (None without ``locks``)."""
    seen = 0.0
    held: Counter[str] = Counter()
    while database.now(stage.db) < end:
        looked = time.monotonic()
        sleeping = database.sleeping(stage.db) > 0
        rows = database.held_while_sleeping(stage.db) if sleeping and locks else []
        time.sleep(WATCH_EVERY)
        took = time.monotonic() - looked
        if sleeping:
            seen += took
        held.update(dict.fromkeys(rows, took))
    return seen, (tuple(sorted(held.items())) if locks else None)


def refusing_database(stage: Stage) -> FaultResult:
    """The database refuses the runners for the window, while they work; then it is back."""
    return relay_fault(stage, "refuse")


def unanswering_database(stage: Stage) -> FaultResult:
    """The database stops answering the runners for the window, while they work; then answers."""
    return relay_fault(stage, "blackhole")


def relay_fault(stage: Stage, mode: Mode) -> FaultResult:
    """Put the relay in ``mode`` for the window; measure the runners during it and after."""
    db = stage.db
    stage.ensure_backlog()
    stage.wait_for_work()
    window = stage.profile.fault_window
    offsets = stage.log_offsets()
    running = tuple(database.running_ids(db))
    began = database.now(db)
    stage.relay.set_mode(mode)
    try:
        alive_during = watch_alive(stage, window / 2)
        middle = stage.log_offsets()
        alive_during = min(alive_during, watch_alive(stage, window / 2))
    finally:
        ends = stage.log_offsets()
        recovered = database.now(db)
        stage.relay.set_mode("forward")
    stage.say(f"Relay {mode} for {seconds(recovered - began):.1f}s, forwarding again")
    first_start = first_after(stage, "a new send_user_email execution", recovered, email=True)
    first_idle = first_after(stage, "an idle_probe attempt", recovered, email=False)
    with contextlib.suppress(TimeoutError):
        wait_for(
            "the executions running at the start end",
            lambda: not database.still_running(db, running),
            ENDED_WITHIN + 20,
        )
    texts = stage.logs_between(offsets, ends)
    first_half = stage.logs_between(offsets, middle)
    second_half = stage.logs_between(middle, ends)
    length = seconds(recovered - began)
    return FaultResult(
        mode=mode,
        began=began,
        recovered=recovered,
        alive_during=alive_during,
        alive_after=len(stage.fleet.alive_labels()),
        logs=tuple(logs.volume(label, text, length) for label, text in sorted(texts.items())),
        settled=tuple(
            logs.volume(label, text, length / 2, before=first_half.get(label, ""))
            for label, text in sorted(second_half.items())
        ),
        errors=logs.matching(texts, " ERROR "),
        slow_warnings=logs.matching(texts, SLOW_CYCLE_TEXT),
        running=running,
        ended=tuple(database.ended_at(db, running)),
        first_start=first_start,
        first_idle=first_idle,
    )


def watch_alive(stage: Stage, window: float) -> int:
    """Sleep out the window; the fewest runners seen alive at once meanwhile."""
    fewest = len(stage.fleet.alive_labels())
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        time.sleep(min(WATCH_EVERY, max(0.0, deadline - time.monotonic())))
        fewest = min(fewest, len(stage.fleet.alive_labels()))
    return fewest


def first_after(stage: Stage, what: str, moment: datetime, *, email: bool) -> datetime | None:
    """The first send_user_email start (or idle_probe attempt) after ``moment``; None if late."""
    db = stage.db

    def first() -> datetime | None:
        if email:
            return database.first_start_after(db, EMAIL_TASK, moment)
        return next((at for at, _ in database.attempts(db, IDLE_TASK) if at > moment), None)

    with contextlib.suppress(TimeoutError):
        return wait_for(what, first, MAX_WAIT + RESUME_SLACK + 10)
    return None
