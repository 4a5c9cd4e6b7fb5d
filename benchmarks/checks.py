"""The correctness checks and the targets, as pure functions of figures and rows.

Nothing here reads a database, a clock or a file: the children read the
tables and pass what they found, the orchestrator passes the children's
results. That keeps every rule in one place, where a unit test can show it
passing on good data and complaining on bad (``tests/tools/test_benchmark_checks.py``).

Checks return *problems* (strings; any problem fails the run and the exit
status). Targets return a :class:`Target` whose ``ok`` is reported as
``met`` / ``MISSED``, never asserted: timings on a shared machine are noisy.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from scripts.measure import most_at_once

#: A variant is expected to reach this share of its baseline's instr/s.
MIN_RATIO_TO_BASELINE = 0.8
#: django-planton's complete-only drain against the original planton on Node.
MIN_RATIO_TO_NODE = 1.0
#: The Threads executor against concurrency / receiver latency.
MIN_RATIO_TO_IDEAL = 0.8
#: The median slot-refill gap on PostgreSQL should stay under this.
MAX_REFILL_GAP_MS = 10.0
#: An idle runner should use less than this share of one core.
MAX_IDLE_CPU_SHARE = 0.02
#: Attempts per second may exceed what the delays ask for by this factor.
ATTEMPT_RATE_SLACK = 1.05
#: An idle task with a delay of 1 s beside a busy one: more than this per second is a storm.
MAX_IDLE_ATTEMPTS_PER_S = 2.5
#: Idle tasks with delays of 1 s must be attempted at least this often per second each.
MIN_IDLE_ATTEMPT_SHARE = 0.8
#: The cost curve: CPU of one runner per idle attempt (10,000 tasks at 1/s: 10% of a core).
MAX_SCALE_US_PER_ATTEMPT = 10.0
#: Two attempts of one task, by any runners, no closer than this share of its delay.
MIN_GAP_SHARE = 0.9
#: Several runners' attempts per second against the cadence the delays ask for.
MIN_CADENCE_SHARE = 0.8
#: No runner should dispatch more than this many times its fair share (1 / runners).
MAX_FAIR_SHARE_FACTOR = 2.0


class Target(NamedTuple):
    """A figure against its goal; ``ok`` is None when there was no figure."""

    name: str
    ok: bool | None


class ExecutionRow(NamedTuple):
    """What the drain check needs of one execution of the drained task."""

    instruction: str
    running: bool
    failed: bool
    started_at: Any
    ended_at: Any


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values (a variant with no successful run)."""
    return statistics.median(values) if values else None


# -- checks of one run (problems) ------------------------------------------------


def drain_problems(
    *,
    accounts: int,
    account_ids: set[str],
    owed: int,
    executions: Sequence[ExecutionRow],
    concurrency: int,
) -> list[str]:
    """Compare the accounts and the task's executions with what a perfect drain leaves.

    Every account processed, each by exactly one execution, none left running
    or failed, and never more than ``concurrency`` executions running at once
    (from their ``started_at``/``ended_at``): the scheduler's promises, which
    a fast but wrong run must not get away with.
    """
    problems: list[str] = []

    def expect(condition: bool, message: str) -> None:
        if not condition:
            problems.append(message)

    instructions = [row.instruction for row in executions]
    running = sum(1 for row in executions if row.running)
    failed = sum(1 for row in executions if row.failed)
    expect(len(account_ids) == accounts, f"{len(account_ids)} accounts, not {accounts}")
    expect(owed == 0, f"{owed} account(s) never processed")
    expect(len(instructions) == accounts, f"{len(instructions)} executions for {accounts} accounts")
    duplicates = len(instructions) - len(set(instructions))
    expect(duplicates == 0, f"{duplicates} account(s) dispatched more than once")
    expect(set(instructions) == account_ids, "executions do not match the accounts")
    expect(running == 0, f"{running} execution(s) left running")
    expect(failed == 0, f"{failed} execution(s) failed")
    spans = [(row.started_at, row.ended_at) for row in executions if row.ended_at is not None]
    try:
        most = most_at_once(spans)
    except ValueError as error:  # an execution that ended before it started
        problems.append(str(error))
    else:
        expect(most <= concurrency, f"{most} executions ran at once, concurrency {concurrency}")
    return problems


def finished_problems(finished: bool, timeout: float) -> list[str]:
    """A run that did not end its work in time has no meaningful figures."""
    return [] if finished else [f"not drained within {timeout} s"]


def already_ended_problems(not_ended: int) -> list[str]:
    """``complete()`` that ended nothing means someone else ended the execution first."""
    return [f"{not_ended} execution(s) were already ended when completed"] if not_ended else []


def idle_beside_busy_problems(attempts_per_s: float) -> list[str]:
    """An idle task (delay 1 s) beside a busy one must not be woken by the busy one's ends."""
    if attempts_per_s > MAX_IDLE_ATTEMPTS_PER_S:
        return [f"idle task attempted {attempts_per_s:.1f} times per second (delay 1 s)"]
    return []


def backoff_problems(phases: Mapping[str, Mapping[str, int]], seconds: float) -> list[str]:
    """Wake-ups must not undo an idle task's delay: about one attempt a second, alone or not."""
    return [
        f"idle task attempted {figures['attempts']} times in {seconds} s ({phase}), delay 1 s"
        for phase, figures in phases.items()
        if figures["attempts"] > 2 * seconds + 2
    ]


def idle_problems(attempts: int, tasks: int, wall: float) -> list[str]:
    """A runner that cannot keep up with many idle tasks starves them: attempted too rarely."""
    if attempts < MIN_IDLE_ATTEMPT_SHARE * tasks * wall:  # delays of 1 s: about one a second
        return [f"{attempts} attempts of {tasks} tasks in {wall:.1f} s"]
    return []


class Attempt(NamedTuple):
    """When a task was attempted (seconds, any clock the runners share), and by which runner."""

    at: float
    runner: int


class Gap(NamedTuple):
    """The time between two consecutive attempts of a task, and the runners that made them."""

    seconds: float
    first: int
    second: int


def merge_attempt_times(
    runners: Sequence[Mapping[str, Sequence[float]]],
) -> dict[str, list[Attempt]]:
    """Each task's attempts across runners, in time order; runner ``n`` is ``runners[n]``.

    Each runner maps a task's name to the times it attempted it.
    """
    merged: dict[str, list[Attempt]] = {}
    for runner, times in enumerate(runners):
        for task, values in times.items():
            merged.setdefault(task, []).extend(Attempt(at, runner) for at in values)
    return {task: sorted(attempts) for task, attempts in merged.items()}


def shortest_gaps(attempts: Mapping[str, Sequence[Attempt]]) -> dict[str, Gap]:
    """The shortest gap between two consecutive attempts of each task attempted twice or more."""
    gaps: dict[str, Gap] = {}
    for task, found in attempts.items():
        ordered = sorted(found)
        if len(ordered) > 1:
            gaps[task] = min(
                Gap(b.at - a.at, a.runner, b.runner) for a, b in itertools.pairwise(ordered)
            )
    return gaps


def attempt_gap_problems(attempts: Mapping[str, Sequence[Attempt]], delay: float) -> list[str]:
    """No task attempted more often than its delay allows, whichever runners attempted it.

    ``attempts``: each task's attempts, merged across runners
    (:func:`merge_attempt_times`). A gap shorter than :data:`MIN_GAP_SHARE`
    of the delay is a problem; the message says how many of the tasks had
    theirs between two runners, and which runners made the shortest.
    """
    short = {
        task: gap
        for task, gap in shortest_gaps(attempts).items()
        if gap.seconds < MIN_GAP_SHARE * delay
    }
    if not short:
        return []
    worst = min(short, key=short.__getitem__)
    gap = short[worst]
    across = sum(1 for found in short.values() if found.first != found.second)
    return [
        f"{len(short)} task(s) attempted sooner than their delay of {delay:g} s allows, "
        f"{across} of them by two runners (shortest gap {1000 * gap.seconds:.0f} ms, {worst}, "
        f"runners {gap.first + 1} then {gap.second + 1})"
    ]


class Spread(NamedTuple):
    """How evenly something (attempts, dispatched instructions) spreads over runners."""

    #: Each runner's share of the total, in the runners' order.
    shares: tuple[float, ...]
    #: The busiest runner's count over the least busy one's; None when one did nothing.
    max_over_min: float | None
    #: Coefficient of variation: standard deviation over the mean (0 is perfectly even).
    cv: float


def spread(counts: Sequence[float]) -> Spread | None:
    """The spread of ``counts``, one per runner; None with no runner or nothing counted."""
    total = sum(counts)
    if not counts or total <= 0:
        return None
    mean = total / len(counts)
    return Spread(
        shares=tuple(count / total for count in counts),
        max_over_min=max(counts) / min(counts) if min(counts) > 0 else None,
        cv=statistics.pstdev(counts) / mean,
    )


def run_problems(result: Mapping[str, Any] | None, returncode: int | None, log: str) -> list[str]:
    """What went wrong with one child: no result line, its own problems, a non-zero exit."""
    if not result:
        return [f"no result (exit {returncode}), see {log}"]
    problems = list(result.get("problems", []))
    if returncode != 0:
        problems.append(f"exit {returncode}, see {log}")
    return problems


# -- targets (reported, not asserted) --------------------------------------------


def rate(result: Mapping[str, Any]) -> float:
    """Instructions per second of wall time of one drain run."""
    return float(result["instructions"] / result["wall"])


def ratio_to_baseline(
    results: Mapping[str, Sequence[Mapping[str, Any]]], key: str, baseline: str | None
) -> tuple[float, float] | None:
    """Median instr/s over that of ``baseline``, and the median of the ratios within each round.

    The variants of one round ran one after the other, so their ratio is
    less disturbed by a neighbour's load than the ratio of two medians.
    ``results`` maps a variant's key to its runs, each with its ``round``.
    """
    if baseline is None:
        return None
    base = results.get(baseline) or []
    runs = results.get(key) or []
    if not base or not runs:
        return None
    base_by_round = {r["round"]: rate(r) for r in base}
    paired = [rate(r) / base_by_round[r["round"]] for r in runs if r["round"] in base_by_round]
    overall = statistics.median([rate(r) for r in runs]) / statistics.median(
        [rate(r) for r in base]
    )
    return overall, statistics.median(paired) if paired else overall


def drain_target(label: str, baseline: str, ratios: tuple[float, float] | None) -> Target:
    """A variant against the baseline doing the same database work, by the per-round ratio."""
    ok = None if ratios is None else ratios[1] >= MIN_RATIO_TO_BASELINE
    figure = "no result" if ratios is None else f"{ratios[1]:.2f}x"
    return Target(f"drain, {label}: >= {MIN_RATIO_TO_BASELINE}x {baseline} ({figure})", ok)


def node_target(label: str, ratios: tuple[float, float] | None) -> Target:
    """The complete-only drain against the original planton on Node, by the per-round ratio."""
    ok = None if ratios is None else ratios[1] >= MIN_RATIO_TO_NODE
    figure = "no result" if ratios is None else f"{ratios[1]:.2f}x"
    return Target(f"drain, {label}: >= {MIN_RATIO_TO_NODE}x planton on Node ({figure})", ok)


def executor_target(
    label: str, rate_per_s: float | None, ideal: float, *, loop_rate: float | None = None
) -> Target:
    """Threads should reach most of the ideal rate, concurrency / receiver latency.

    ``loop_rate``: what a hand-written threaded loop reached in the same run,
    shown beside the figure (no Python loop reaches the ideal on a small
    machine) but not judged.
    """
    ok = None if rate_per_s is None else rate_per_s >= MIN_RATIO_TO_IDEAL * ideal
    figure = "no result" if rate_per_s is None else f"{rate_per_s / ideal:.2f}x"
    if rate_per_s is not None and loop_rate:
        figure += f"; {rate_per_s / loop_rate:.2f}x the threaded loop's {loop_rate:,.0f} instr/s"
    return Target(
        f"executors, {label}: >= {MIN_RATIO_TO_IDEAL}x the ideal {ideal:,.0f} instr/s ({figure})",
        ok,
    )


def refill_target(label: str, gap_median_ms: float | None) -> Target:
    """A freed slot should be refilled at once, not after the task's delay of 1 s."""
    ok = None if gap_median_ms is None else gap_median_ms < MAX_REFILL_GAP_MS
    return Target(f"slot refill, {label}: median gap < {MAX_REFILL_GAP_MS:.0f} ms", ok)


def connection_limit(workers: int) -> int:
    """One connection per worker thread, plus housekeeping, the heartbeat and the listener."""
    return workers + 3


def idle_targets(result: Mapping[str, Any]) -> list[Target]:
    """What waiting costs: CPU, connections and queries of an idle run's result."""
    expected = result["tasks"] * 1.0  # one attempt per task per second
    connections = result["connections_max"]
    connections_ok = (
        None if connections is None else connections <= connection_limit(result["workers"])
    )
    return [
        Target("idle: CPU < 2% of one core", result["cpu_share"] < MAX_IDLE_CPU_SHARE),
        Target("idle: connections <= workers + 3", connections_ok),
        Target(
            "idle: queries/s no more than the delays ask for",
            result["attempts_per_s"] <= expected * ATTEMPT_RATE_SLACK,
        ),
    ]


def scale_target(tasks: int, cpu_us_per_attempt: float | None, cpu_share: float | None) -> Target:
    """One runner's CPU per idle attempt, at ``tasks`` idle tasks with delays of 1 s."""
    ok = None if cpu_us_per_attempt is None else cpu_us_per_attempt <= MAX_SCALE_US_PER_ATTEMPT
    figure = (
        "no result"
        if cpu_us_per_attempt is None or cpu_share is None
        else f"{cpu_us_per_attempt:.0f} us, {100 * cpu_share:.1f}% of a core"
    )
    return Target(
        f"scale, {tasks:,} idle tasks on one runner: <= {MAX_SCALE_US_PER_ATTEMPT:.0f} us "
        f"of CPU per attempt ({figure})",
        ok,
    )


def cadence_target(label: str, attempts_per_s: float | None, asked_for: float) -> Target:
    """Several runners together attempt the tasks as often as their delays ask: no more, no less."""
    if attempts_per_s is None or asked_for <= 0:
        return Target(f"fleet, {label}: attempts/s at the cadence (no result)", None)
    ratio = attempts_per_s / asked_for
    ok = MIN_CADENCE_SHARE <= ratio <= ATTEMPT_RATE_SLACK
    return Target(
        f"fleet, {label}: attempts/s within {MIN_CADENCE_SHARE}-{ATTEMPT_RATE_SLACK}x "
        f"the cadence ({ratio:.2f}x)",
        ok,
    )


def fairness_target(label: str, found: Spread | None) -> Target:
    """No runner takes more than :data:`MAX_FAIR_SHARE_FACTOR` times its fair share of the work."""
    if found is None:
        return Target(
            f"fleet, {label}: no runner above {MAX_FAIR_SHARE_FACTOR:g}x its fair share "
            "(no result)",
            None,
        )
    fair = 1 / len(found.shares)
    most = max(found.shares)
    return Target(
        f"fleet, {label}: no runner above {MAX_FAIR_SHARE_FACTOR:g}x its fair share of "
        f"{100 * fair:.1f}% (busiest {100 * most:.1f}%)",
        most <= MAX_FAIR_SHARE_FACTOR * fair,
    )
