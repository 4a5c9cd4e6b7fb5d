"""The checks over the whole run: pure functions of the executions, accounts, samples, attempts.

:func:`over_the_run` runs them in the order the report prints them, from one
:class:`~stress.results.Evidence`; each also takes plain values, for tests.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from scripts.measure import most_at_once
from stress.checks.base import EXAMPLES, Check, Findings, caught_by_outage
from stress.checks.clock import cut_short, next_attempts, stored_times
from stress.config import (
    BAD_TASK,
    IDLE_DELAY,
    IDLE_TASK,
    KNOWN_ISSUES,
    OVERRIDE,
    OVERRIDE_GRACE,
    SLOW_DELAY,
)
from stress.records import Account, Attempt, CutShort, Execution, Sample, seconds
from stress.results import Evidence, LimitChange, Window

SHORTEST_GAP = IDLE_DELAY * 0.9  # between two attempts of a task with a 1 s delay
SHOWN_GAPS = 5  # attempts too close together shown, at the most
#: Where a still running execution's span ends for the sweep: never.
NEVER = datetime.max.replace(tzinfo=UTC)


def no_overlap(executions: Sequence[Execution]) -> Findings:
    """No instruction of a task ran twice at once, and nothing is left running."""
    by_instruction: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for execution in executions:
        by_instruction[(execution.task, execution.instruction)].append(execution)
    overlaps = []
    for items in by_instruction.values():
        ordered = sorted(items, key=lambda execution: (execution.started_at, execution.id))
        for first, second in itertools.pairwise(ordered):
            if first.ended_at is None or first.ended_at > second.started_at:
                overlaps.append((first, second))
    running = [execution for execution in executions if execution.ended_at is None]
    per_task = Counter(execution.task for execution in executions)
    tasks = ", ".join(f"{task} {count}" for task, count in sorted(per_task.items()))
    examples = tuple(
        f"      overlap: {first.task} {first.instruction!r}: execution {first.id} "
        f"[{first.started_at.isoformat()}, {first.ended_at}) on {first.hostname}, "
        f"execution {second.id} from {second.started_at.isoformat()} on {second.hostname}"
        for first, second in overlaps[:EXAMPLES]
    )
    check = Check(
        "nothing dispatched twice",
        not overlaps and not running,
        f"{len(executions)} executions of {len(by_instruction)} distinct instructions; "
        f"{len(overlaps)} overlapping pairs; {len(running)} still running at the end",
        examples,
    )
    summary = (
        ("instructions dispatched", f"{len(executions)} ({tasks})"),
        ("dispatched twice while active", str(len(overlaps))),
    )
    return Findings((check,), summary)


def accounts(
    email: Sequence[Execution],
    accounts: Sequence[Account],
    mails: Mapping[str, int],
    killed_label: str,
    killed_instructions: Sequence[str],
    outages: Sequence[Window] = (),
) -> Findings:
    """Every account served exactly once, and e-mailed at least once (twice only after a fault).

    An account served by a receiver that finished after its execution had been
    terminated across an outage (see :func:`~.base.caught_by_outage`) has no
    successful execution: allowed, and counted apart. The maximum duration (3 s)
    is shorter than the outages, and a receiver cannot be stopped.
    """
    by_account: dict[str, list[Execution]] = defaultdict(list)
    for execution in email:
        by_account[execution.instruction].append(execution)
    unserved = [pk for pk, _, sent in accounts if not sent]
    succeeded = {
        pk: sum(execution.succeeded for execution in by_account[str(pk)]) for pk, _, _ in accounts
    }
    late = {
        pk
        for pk, _, sent in accounts
        if sent
        and not succeeded[pk]
        and by_account[str(pk)]
        and all(caught_by_outage(item, outages) for item in by_account[str(pk)])
    }
    successes = Counter(count for pk, count in succeeded.items() if pk not in late)
    per_account = Counter(len(by_account[str(pk)]) for pk, _, _ in accounts)
    mails_per_account = Counter(mails.get(address, 0) for _, address, _ in accounts)
    faulted = {pk for pk, items in by_account.items() if any(item.faulted for item in items)}
    unexplained = [
        pk for pk, address, _ in accounts if mails.get(address, 0) > 1 and str(pk) not in faulted
    ]
    unmailed = [pk for pk, address, _ in accounts if mails.get(address, 0) == 0]
    not_once = {count: n for count, n in successes.items() if count != 1}
    killed_served = [
        instruction
        for instruction in killed_instructions
        if any(item.succeeded and item.hostname != killed_label for item in by_account[instruction])
    ]
    strangers = set(mails) - {address for _, address, _ in accounts}
    processed = Check(
        "every account processed",
        not unserved and not not_once and len(killed_served) == len(killed_instructions),
        f"{len(accounts)} accounts, {len(unserved)} without email_sent_at; executions per "
        f"account {dict(sorted(per_account.items()))}; accounts with exactly one "
        f"successful execution {successes[1]} (other counts: {not_once or 'none'}); "
        f"{len(killed_served)}/{len(killed_instructions)} accounts of the killed runner "
        f"served by another one; {len(late)} served by a receiver that finished after its "
        "execution was terminated across an outage (allowed)",
    )
    mailed = Check(
        "every account e-mailed",
        not unmailed and not unexplained and not strangers,
        f"e-mails per account {dict(sorted(mails_per_account.items()))}; {len(unmailed)} "
        f"never e-mailed; {len(unexplained)} e-mailed more than once without a failed or "
        f"terminated execution (at-least-once delivery allows a second e-mail only then); "
        f"{len(strangers)} e-mails to unknown addresses",
    )
    summary = (
        ("accounts served", f"{len(accounts) - len(unserved)}/{len(accounts)}"),
        (
            "e-mails per account",
            ", ".join(f"{count}x: {n}" for count, n in sorted(mails_per_account.items())),
        ),
    )
    return Findings((processed, mailed), summary)


def late_starts(events: Sequence[CutShort], known: Collection[str] = KNOWN_ISSUES) -> Findings:
    """No receiver was handed an execution that had already ended (task_dispatched is for
    running executions); the known issue ``receivers-after-termination`` otherwise."""
    by_runner = Counter(event.runner for event in events)
    tolerated = bool(events) and "receivers-after-termination" in known
    examples = tuple(
        f"      execution {event.execution} had ended before {event.runner}'s receiver started "
        f"(seen at {event.at.time().isoformat()})"
        for event in events[:EXAMPLES]
    )
    check = Check(
        "no receiver for an ended execution",
        not events or tolerated,
        f"{len(events)} receivers found their execution already ended when they started "
        f"({dict(sorted(by_runner.items())) or 'none'})"
        + ("; KNOWN ISSUE receivers-after-termination" if tolerated else ""),
        () if tolerated else examples,
    )
    return Findings((check,), (("receivers for ended executions", str(len(events))),))


def running_at_starts(
    spans: Sequence[tuple[datetime, datetime | None]],
) -> list[tuple[datetime, int]]:
    """At each distinct start, how many spans are open (itself included).

    Open at ``t``: started at or before ``t`` and not ended by then (an end at
    ``t`` does not count, as in :func:`scripts.measure.most_at_once`). Unlike
    that measure, it samples only at starts: that is where a runner decides
    against the limit in force, which changes during the run.
    """
    starts = sorted(started for started, _ in spans)
    ends = sorted(ended for _, ended in spans if ended is not None)
    return [
        (moment, bisect.bisect_right(starts, moment) - bisect.bisect_right(ends, moment))
        for moment in sorted(set(starts))
    ]


def limit_at(limits: Sequence[LimitChange], moment: datetime) -> int:
    """The limit in force at ``moment``: the last change at or before it (else the first)."""
    index = bisect.bisect_right([at for at, _ in limits], moment) - 1
    return limits[max(index, 0)][1]


def in_grace(moment: datetime, lowered_at: Sequence[datetime]) -> bool:
    grace = timedelta(seconds=OVERRIDE_GRACE)
    return any(lowered <= moment <= lowered + grace for lowered in lowered_at)


def concurrency(
    email: Sequence[Execution],
    samples: Sequence[Sample],
    sampler_failures: int,
    limits: Sequence[LimitChange],
    lowered_at: Sequence[datetime],
) -> Findings:
    """Never more running than the limit in force: as sampled live, and swept afterwards."""
    spans = [(execution.started_at, execution.ended_at) for execution in email]
    highest = most_at_once((started, ended or NEVER) for started, ended in spans)
    violations = [
        (moment, count, limit_at(limits, moment))
        for moment, count in running_at_starts(spans)
        if count > limit_at(limits, moment)
    ]
    sampled_violations = [
        sample
        for sample in samples
        if sample.running > sample.limit and not in_grace(sample.at, lowered_at)
    ]
    sampled_max = max((sample.running for sample in samples), default=-1)
    declared = limits[0][1] if limits else 0
    every = seconds(samples[-1].at - samples[0].at) / max(1, len(samples) - 1) if samples else 0.0
    # Shown above both verdicts: the sweep's excesses, then the sampler's.
    examples = tuple(
        f"      over the limit: {count} running at {moment.isoformat()} (limit {limit})"
        for moment, count, limit in violations[:EXAMPLES]
    ) + tuple(
        f"      sampled over the limit: {sample.running} at {sample.at.isoformat()} "
        f"(limit {sample.limit})"
        for sample in sampled_violations[:EXAMPLES]
    )
    sampled = Check(
        "concurrency (sampled)",
        bool(samples) and not sampled_violations,
        f"{len(samples)} samples, one every {every * 1000:.0f} ms on average, "
        f"{sampler_failures} failed (database down); max {sampled_max} running, limit "
        f"{declared}; {len(sampled_violations)} samples above the limit outside the grace "
        "period after lowering it",
        examples,
    )
    swept = Check(
        "concurrency (swept)",
        not violations,
        f"max {highest} running at a start over {len(email)} executions; "
        f"{len(violations)} starts above the limit in force",
    )
    figure = f"{sampled_max} / {highest} (limit {declared}, {OVERRIDE} under the override)"
    return Findings((sampled, swept), (("max concurrency: sampled / swept", figure),))


def short_gaps(attempts: Sequence[Attempt], what: str) -> tuple[list[float], tuple[str, ...]]:
    """Gaps between consecutive attempts shorter than 0.9 delay, and the first few shown."""
    short: list[float] = []
    shown: list[str] = []
    for (first, by_first), (second, by_second) in itertools.pairwise(attempts):
        gap = seconds(second - first)
        if gap < SHORTEST_GAP:
            if len(short) < SHOWN_GAPS:
                shown.append(
                    f"      {what}: attempts {gap:.3f}s apart: {by_first} at "
                    f"{first.time().isoformat()}, {by_second} at {second.time().isoformat()}"
                )
            short.append(gap)
    return short, tuple(shown)


def gaps(times: Sequence[datetime]) -> list[float]:
    return [seconds(second - first) for first, second in itertools.pairwise(times)]


def idle_gaps(attempts: Sequence[Attempt]) -> Findings:
    """No two idle_probe attempts, whoever made them, less than 0.9 s apart."""
    short, shown = short_gaps(attempts, IDLE_TASK)
    shortest = min(gaps([at for at, _ in attempts]), default=float("nan"))
    by_runner = Counter(runner.split(".")[0] for _, runner in attempts)
    check = Check(
        "idle_probe gaps",
        bool(attempts) and not short,
        f"{len(attempts)} attempts over the run by {dict(sorted(by_runner.items()))}; shortest "
        f"gap {shortest:.3f}s, {len(short)} shorter than {SHORTEST_GAP:g}s",
        shown,
    )
    return Findings((check,))


def bad_input(
    attempts: Sequence[Attempt], details: Sequence[str], executions: Sequence[Execution]
) -> Findings:
    """bad_input_probe never dispatched, and many kinds of bad batch rejected."""
    kinds = Counter(detail.split(":")[0] for detail in details)
    reasons = {detail.rsplit("instructions: ", 1)[-1][:25] for detail in details}
    dispatched = sum(execution.task == BAD_TASK for execution in executions)
    check = Check(
        "bad input never dispatched",
        dispatched == 0 and len(reasons) >= 5,
        f"{len(attempts)} failed attempts of bad_input_probe ({dict(sorted(kinds.items()))}, "
        f"{len(reasons)} different reasons); {dispatched} executions",
    )
    return Findings((check,))


def bad_gaps(attempts: Sequence[Attempt]) -> Findings:
    """A failed attempt pushes the next attempt back for every runner, like an empty one."""
    short, shown = short_gaps(attempts, BAD_TASK)
    between = gaps([at for at, _ in attempts])
    check = Check(
        "bad_input_probe gaps",
        bool(attempts) and not short,
        f"shortest gap between failed attempts {min(between, default=float('nan')):.3f}s, "
        f"{len(short)} of {len(between)} shorter than {SHORTEST_GAP:g}s "
        f"(delay {IDLE_DELAY:g}s; a failed attempt must push next_attempt_at for every runner)",
        shown,
    )
    return Findings((check,), (("bad_input_probe attempts < 0.9s apart", str(len(short))),))


def slow_after_restarts(attempts: Sequence[datetime], restarts: Sequence[datetime]) -> Findings:
    """slow_probe not attempted again within its 300 s delay, although every runner restarted."""
    between = gaps(attempts)
    in_reach = [
        at
        for at in restarts
        if attempts and attempts[0] < at < attempts[0] + timedelta(seconds=SLOW_DELAY)
    ]
    check = Check(
        "slow_probe after restarts",
        bool(attempts) and all(gap >= SLOW_DELAY - 1 for gap in between) and bool(in_reach),
        f"{len(attempts)} attempt(s) in the run; all four runners restarted "
        f"{len(in_reach)} time(s), and r1 after its kill, within {SLOW_DELAY:g}s of "
        f"the first attempt; gaps {[round(gap, 1) for gap in between] or 'none'} "
        f"(each must be >= {SLOW_DELAY - 1:g}s)",
    )
    figure = f"{len(attempts)} (restarts within its delay: {len(in_reach) + 1})"
    return Findings((check,), (("slow_probe attempts", figure),))


def cycles(task_row_updates: int, email: Sequence[Execution]) -> Findings:
    """No verdict: committed cycles next to the cycles that dispatched e-mails."""
    batches = len({(execution.hostname, execution.started_at) for execution in email})
    figure = (
        f"{task_row_updates} (~ committed cycles) for {batches} dispatching cycles of "
        "send_user_email"
    )
    return Findings(summary=(("maintenance_task row updates", figure),))


def over_the_run(evidence: Evidence) -> Iterator[Findings]:
    """Every check over the whole run, one at a time (so one that raises loses no other)."""
    email = evidence.email
    yield no_overlap(evidence.executions)
    yield accounts(
        email,
        evidence.accounts,
        dict(evidence.mails),
        evidence.killed_label,
        evidence.killed_instructions,
        evidence.outages,
    )
    yield concurrency(
        email, evidence.samples, evidence.sampler_failures, evidence.limits, evidence.lowered_at
    )
    yield stored_times(evidence.executions, evidence.began, evidence.ended)
    yield next_attempts(evidence.ahead, evidence.stalls)
    yield cut_short(evidence.cut_short, evidence.executions, evidence.outages)
    yield late_starts(evidence.late_starts)
    yield idle_gaps(evidence.idle_attempts)
    yield bad_input(evidence.bad_attempts, evidence.failure_details, evidence.executions)
    yield bad_gaps(evidence.bad_attempts)
    yield slow_after_restarts(evidence.slow_attempts, evidence.restarts)
    yield cycles(evidence.task_row_updates, email)
