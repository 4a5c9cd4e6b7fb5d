"""The checks of the runners' clock: two runners' wall clocks are off (``CLOCK_SHIFTS``).

Every time the runners store or compare must come from the database's
clock. A runner that used its own would store times outside the run,
push next attempts ten minutes out, and end executions as overdue while
their receivers are still at work. Pure functions, like the other checks.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from stress.checks.base import EXAMPLES, Check, Findings, caught_by_outage
from stress.config import (
    AHEAD_SLACK,
    KNOWN_ISSUES,
    LONGEST_DELAY,
    STORED_MARGIN,
    clock_note,
    skewed_runners,
)
from stress.records import Ahead, CutShort, Execution, seconds
from stress.results import Window


def next_attempts(
    ahead: Sequence[Ahead], stalls: Sequence[Window] = (), known: Collection[str] = KNOWN_ISSUES
) -> Findings:
    """No task's next_attempt_at further ahead of the database's now than its longest delay.

    Right after a database that held the runners' statements without
    answering, a sample ahead by up to the stall's length more is the known
    issue ``clock-ahead-after-stall``: counted apart.
    """
    furthest: dict[str, Ahead] = {}
    after_stall: list[Ahead] = []
    for sample in ahead:
        if "clock-ahead-after-stall" in known and _stall_explains(sample, stalls):
            after_stall.append(sample)
            continue
        if sample.task not in furthest or sample.seconds > furthest[sample.task].seconds:
            furthest[sample.task] = sample
    too_far = [
        sample
        for task, sample in sorted(furthest.items())
        if task in LONGEST_DELAY and sample.seconds > LONGEST_DELAY[task] + AHEAD_SLACK
    ]
    unbounded = sorted(set(furthest) - set(LONGEST_DELAY))
    examples = tuple(
        f"      {sample.task}: next_attempt_at {sample.seconds:+.1f}s ahead of the database's "
        f"now at {sample.at.time().isoformat()} (its longest delay is "
        f"{LONGEST_DELAY[sample.task]:g}s)"
        for sample in too_far
    )
    figures = ", ".join(f"{task} {sample.seconds:+.1f}s" for task, sample in furthest.items())
    stalled = ""
    if after_stall:
        worst = max(after_stall, key=lambda sample: sample.seconds)
        stalled = (
            f"; KNOWN ISSUE clock-ahead-after-stall: {len(after_stall)} samples right after the "
            f"database stopped answering were further ahead (the most: {worst.task} "
            f"{worst.seconds:+.1f}s)"
        )
    check = Check(
        "next attempts on the database's clock",
        bool(ahead) and not too_far and not unbounded,
        f"{len(ahead)} samples; furthest ahead of the database's now: {figures or 'none'} "
        f"(allowed: each task's longest delay plus {AHEAD_SLACK:g}s); "
        f"{len(too_far)} task(s) further; tasks without a known longest delay: "
        f"{', '.join(unbounded) or 'none'}{stalled}",
        examples,
    )
    return Findings(
        (check,),
        (
            ("runners under a skewed clock", skewed_runners()),
            ("next_attempt_at ahead of now (max)", figures or "none"),
        ),
    )


def _stall_explains(sample: Ahead, stalls: Sequence[Window]) -> bool:
    """Whether ``sample`` is too far ahead, but by at most the length S of a stall that ended
    at most S (plus the task's longest delay) before it."""
    if sample.task not in LONGEST_DELAY:
        return False
    allowed = LONGEST_DELAY[sample.task] + AHEAD_SLACK
    if sample.seconds <= allowed:
        return False
    for start, end in stalls:
        length = seconds(end - start)
        reach = end + timedelta(seconds=length + allowed)
        if start <= sample.at <= reach and sample.seconds <= allowed + length:
            return True
    return False


def stored_times(executions: Sequence[Execution], began: datetime, ended: datetime) -> Findings:
    """Every execution's start, end and termination lies within the run, on the database's clock.

    Grouped by the runner that dispatched the execution; its end may have been
    stamped by another (a receiver's, or a housekeeper's).
    """
    margin = timedelta(seconds=STORED_MARGIN)
    outside: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for execution in executions:
        for name, value in (
            ("started_at", execution.started_at),
            ("ended_at", execution.ended_at),
            ("terminated_at", execution.terminated_at),
        ):
            if value is None or began - margin <= value <= ended + margin:
                continue
            offset = seconds(value - (began if value < began else ended))
            outside[execution.hostname].append((name, offset))
    examples = tuple(
        f"      executions of {hostname}{clock_note(hostname)}: {len(times)} times outside "
        f"the run, e.g. {times[0][0]} {abs(times[0][1]):.1f}s "
        f"{'before it began' if times[0][1] < 0 else 'after it ended'}; by field "
        f"{dict(Counter(name for name, _ in times))}"
        for hostname, times in sorted(outside.items())
    )[:EXAMPLES]
    count = sum(len(times) for times in outside.values())
    check = Check(
        "execution times on the database's clock",
        not outside,
        f"{len(executions)} executions over {seconds(ended - began):.0f}s of the database's "
        f"clock; {count} of their started_at/ended_at/terminated_at outside it (margin "
        f"{STORED_MARGIN:g}s), from {len(outside)} runner(s)",
        examples,
    )
    return Findings((check,))


def cut_short(
    events: Sequence[CutShort], executions: Sequence[Execution], outages: Sequence[Window] = ()
) -> Findings:
    """No execution was terminated while its receiver was still at work.

    Except across an outage (:func:`~.base.caught_by_outage`): a receiver
    waiting for the database, or queued behind one that does, outlives the
    3 s maximum duration. Those are counted apart.
    """
    by_id = {str(execution.id): execution for execution in executions}
    caught = [
        event
        for event in events
        if event.execution in by_id and caught_by_outage(by_id[event.execution], outages)
    ]
    at_work = [event for event in events if event not in caught]
    terminated = Counter(
        execution.hostname.split(".")[0]
        for execution in executions
        if execution.terminated_at is not None
    )
    by_runner = Counter(event.runner for event in at_work)
    examples = tuple(
        f"      execution {event.execution} of {event.runner}{clock_note(event.runner)} was "
        f"terminated while its receiver worked (seen at {event.at.time().isoformat()})"
        for event in at_work[:EXAMPLES]
    )
    check = Check(
        "no execution terminated while at work",
        not at_work,
        f"{len(at_work)} receivers found their execution terminated when done "
        f"({dict(sorted(by_runner.items())) or 'none'}); terminated executions in all, by the "
        f"runner that dispatched them: {dict(sorted(terminated.items())) or 'none'} (the kill "
        f"and the outages strand some on purpose); {len(caught)} more terminated across an "
        "outage, after their maximum duration, while their receivers waited for the database "
        "or were queued behind one that did (allowed)",
        examples,
    )
    figure = f"{len(at_work)} (and {len(caught)} across outages, allowed)"
    return Findings((check,), (("terminated while at work", figure),))
