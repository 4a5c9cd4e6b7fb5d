"""The checks of the faults: a blocked schedule, a refusing or silent database, PgBouncer.

Pure functions of the scenarios' results (:mod:`stress.scenarios.faults`,
:mod:`stress.scenarios.pooler`), like the other checks. Where a known
library issue (``KNOWN_ISSUES``) explains what a check sees, the check
passes and its line names the issue.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from stress.checks.base import EXAMPLES, Check, Findings, exits_detail
from stress.checks.whole_run import gaps
from stress.config import (
    ENDED_WITHIN,
    KNOWN_ISSUES,
    LIBRARY_LOGGERS,
    LOG_RATE_LIMIT,
    MAX_WAIT,
    RESUME_SLACK,
    SHUTDOWN_LIMIT,
    SLOW_CYCLE_WARNING,
    STARVED_GAP,
)
from stress.records import LogVolume, seconds
from stress.results import BlockedResult, FaultResult, PerRunner, PoolerResult, PoolerStretch

#: How the report names each mode of the relay.
FAULT_NAMES = {"refuse": "refusing database", "blackhole": "unanswering database"}
SOURCES_SHOWN = 4  # sources of log lines shown for the noisiest runner


def per_runner(counts: PerRunner) -> str:
    return ", ".join(f"{label} {count}" for label, count in counts) or "none"


@dataclass(frozen=True)
class Starvation:
    """One watched task during the block: its longest gap, and whether a known issue explains it."""

    task: str
    attempts: int
    longest: float
    tolerated: bool
    examples: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.longest <= STARVED_GAP or self.tolerated


def starvation(
    result: BlockedResult, task: str, attempts: Sequence[datetime], known: Collection[str]
) -> Starvation:
    """The longest gap between ``task``'s attempts in the window (its ends count as attempts).

    A longer one than allowed is the known issue ``lone-schedule-holds-batch``
    when the blocked statement's transaction was seen holding the task's row
    longer than a batch's time budget can explain, and long enough to explain it.
    """
    points = [result.start, *sorted(attempts), result.end]
    between = gaps(points)
    longest = max(between, default=float("inf"))
    held = dict(result.held or ()).get(task, 0.0)
    tolerated = (
        longest > STARVED_GAP
        and held > STARVED_GAP
        and longest <= held + STARVED_GAP
        and "lone-schedule-holds-batch" in known
    )
    examples = tuple(
        f"      {task} not attempted for {gap:.2f}s from {first.time().isoformat()}"
        for first, gap in zip(points, between, strict=False)
        if gap > STARVED_GAP
    )
    return Starvation(task, len(attempts), longest, tolerated, examples)


def blocked_schedule(result: BlockedResult, known: Collection[str] = KNOWN_ISSUES) -> Findings:
    """While a schedule blocked in the database, the other quiet tasks were never starved (each
    attempted at least every 3 s), and a runner named the blocked cycle."""
    watched = [starvation(result, task, times, known) for task, times in result.attempts]
    warned = sum(count for _, count in result.slow_warnings)
    must_warn = result.window > result.threshold
    held = (
        ", ".join(f"{task} {held_for:.1f}s" for task, held_for in result.held)
        if result.held is not None
        else "unknown (no pgrowlocks)"
    )
    gaps_seen = "; ".join(
        f"{item.task} attempted {item.attempts} times, longest gap {item.longest:.2f}s"
        + (" (KNOWN ISSUE lone-schedule-holds-batch: its row was held)" if item.tolerated else "")
        for item in watched
    )
    check = Check(
        "blocked schedule",
        result.blocked_for >= result.window / 2
        and bool(watched)
        and all(item.ok for item in watched)
        and (warned > 0 or not must_warn),
        f"blocking_probe seen in pg_sleep for {result.blocked_for:.1f}s of a "
        f"{result.window:.1f}s window, its transaction seen holding the rows of {held}; "
        f"meanwhile {gaps_seen} (limit {STARVED_GAP:g}s), and {result.sent} e-mails were "
        f"sent; slow-cycle warnings naming blocking_probe: {per_runner(result.slow_warnings)} "
        f"(PLANTON_SLOW_CYCLE_WARNING {result.threshold:g}s)",
        tuple(line for item in watched if not item.ok for line in item.examples)[:EXAMPLES],
    )
    figure = ", ".join(
        f"{item.task} {item.longest:.2f}s" + (" (known issue)" if item.tolerated else "")
        for item in watched
    )
    figure += f" over a {result.window:.0f}s block (limit {STARVED_GAP:g}s)"
    return Findings((check,), (("blocked schedule: longest gaps", figure),))


def resume_limit(window: float) -> float:
    """Seconds after recovery by which work must resume: the back-off from a lost database
    (doubled per failed attempt, at most PLANTON_MAX_WAIT) may wait about the window again."""
    return min(window, MAX_WAIT) + RESUME_SLACK


def relay_fault(result: FaultResult) -> Findings:
    """The runners survived the window, noticed it, and worked again soon after; bounded logs."""
    name = FAULT_NAMES.get(result.mode, result.mode)
    resumed = _after(result, result.first_start)
    idle = _after(result, result.first_idle)
    limit = resume_limit(result.window)
    late, ended_after = _late_endings(result)
    # A database that does not answer leaves cycles in flight: the watchdog must name them.
    needs_name = result.mode == "blackhole" and result.window > SLOW_CYCLE_WARNING
    named = sum(count for _, count in result.slow_warnings)
    check = Check(
        name,
        result.alive_during == 4
        and result.alive_after == 4
        and resumed <= limit
        and idle <= limit
        and not late
        and (named > 0 or not needs_name),
        f"{result.window:.1f}s; runners alive all through {result.alive_during}/4, after "
        f"{result.alive_after}/4; first new execution {resumed:.2f}s after recovery, first "
        f"idle_probe attempt {idle:.2f}s (limit {limit:.1f}s); {len(result.running)} executions "
        f"running at the start, {len(late)} not ended within {ENDED_WITHIN:g}s of recovery "
        f"(the last ended {ended_after:+.1f}s after it); error lines per runner: "
        f"{per_runner(result.errors)}; slow-cycle warnings per runner: "
        f"{per_runner(result.slow_warnings)}",
        tuple(f"      execution {pk} still running or ended late: {at}" for pk, at in late)[
            :EXAMPLES
        ],
    )
    rate_check, rate_figure = log_rate(name, result.logs, result.settled)
    summary = (
        (
            f"{name}: recovery",
            f"{resumed:.2f}s to the first new execution, idle_probe {idle:.2f}s; running "
            f"ones ended by {ended_after:+.1f}s",
        ),
        (f"{name}: library log lines/s", rate_figure),
    )
    return Findings((check, rate_check), summary)


def _after(result: FaultResult, moment: datetime | None) -> float:
    """Seconds from recovery to ``moment`` (inf: never)."""
    if moment is None:
        return float("inf")
    return seconds(moment - result.recovered)


def _late_endings(result: FaultResult) -> tuple[list[tuple[int, datetime | None]], float]:
    """Executions running at the start that ended late (or not at all); the last end's offset."""
    late: list[tuple[int, datetime | None]] = []
    last = float("-inf")
    for pk, ended in result.ended:
        after = _after(result, ended)
        last = max(last, after)
        if after > ENDED_WITHIN:
            late.append((pk, ended))
    return late, (last if result.ended else 0.0)


def log_rate(
    name: str, whole: Sequence[LogVolume], settled: Sequence[LogVolume]
) -> tuple[Check, str]:
    """The library's log lines per second while the outage lasts, per runner, against the limit.

    Judged on the window's second half (``settled``): past the first burst, in
    which each execution in flight says once that it failed, what a runner
    keeps logging as long as the outage lasts. The first traceback of each
    distinct error does not count (the library logs it once, by design);
    repeats count in full. A known issue's records are shown apart, not
    bounded. The figures give the whole window too.
    """
    rates = {volume.runner: volume.rate(volume.lines_of(LIBRARY_LOGGERS)) for volume in settled}
    worst = max(rates, key=lambda runner: rates[runner], default=None)
    top = rates[worst] if worst else float("nan")
    noisiest = max(whole, key=lambda volume: volume.lines, default=None)
    sources = ", ".join(
        f"{source} {count}" for source, count in (noisiest.by_source if noisiest else ())
    )
    whole_rates = ", ".join(
        f"{volume.runner} {volume.rate(volume.lines_of(LIBRARY_LOGGERS)):.1f}" for volume in whole
    )
    check = Check(
        f"log lines while {name}",
        bool(settled) and top <= LOG_RATE_LIMIT,
        "library lines/s in the window's second half: "
        + ", ".join(f"{runner} {rate:.1f}" for runner, rate in rates.items())
        + f" (limit {LOG_RATE_LIMIT:g}/s; each distinct error's first traceback aside); over "
        f"the whole window: {whole_rates}; all lines: "
        + ", ".join(
            f"{volume.runner} {volume.lines} in {volume.records} records "
            f"({volume.first_tracebacks} of first tracebacks)"
            for volume in whole
        )
        + (
            f"; {noisiest.runner}'s by source, first tracebacks aside: {sources}"
            if noisiest
            else ""
        )
        + _apart(whole),
    )
    figure = f"{top:.1f} ({worst or '-'}; limit {LOG_RATE_LIMIT:g})"
    return check, figure


def _apart(whole: Sequence[LogVolume]) -> str:
    """The lines of each known issue during the window, per runner: shown, not bounded."""
    lines: dict[str, list[str]] = {}
    for volume in whole:
        for issue, count in volume.known():
            lines.setdefault(issue, []).append(f"{volume.runner} {count}")
    return "".join(
        f"; KNOWN ISSUE {issue}, not bounded: {', '.join(counts)} lines"
        for issue, counts in sorted(lines.items())
    )


def pooler(result: PoolerResult) -> Findings:
    """Behind PgBouncer: each runner said its listener is deaf, or heard with a direct one."""
    checks = tuple(_stretch(stretch, result.pooled_log) for stretch in result.stretches)
    summary = tuple(
        (
            f"PgBouncer, listener {stretch.listen}",
            f"{stretch.starts} executions in {seconds(stretch.end - stretch.start):.0f}s; "
            f"deaf-listener warnings {per_runner(stretch.deaf)}",
        )
        for stretch in result.stretches
    )
    return Findings(checks, summary)


def _stretch(stretch: PoolerStretch, pooled_log: str) -> Check:
    direct = stretch.listen == "direct"
    exits_ok = len(stretch.exits) == 4 and all(
        code == 0 and elapsed < SHUTDOWN_LIMIT for _, elapsed, code in stretch.exits
    )
    if direct:
        heard = all(count == 0 for _, count in stretch.deaf) and stretch.listeners >= 4
        expected = "none expected, and 4 LISTEN connections"
    else:
        heard = len(stretch.deaf) == 4 and all(count == 1 for _, count in stretch.deaf)
        expected = "one per runner expected"
    ok = heard and stretch.starts > 0 and 0 <= stretch.most_running <= stretch.limit and exits_ok
    return Check(
        f"PgBouncer, listener {stretch.listen}",
        ok,
        f"{', '.join(stretch.labels)} through PgBouncer in transaction mode; deaf-listener "
        f"warnings {per_runner(stretch.deaf)} ({expected}; LISTEN connections PostgreSQL "
        f"saw: {stretch.listeners}); {stretch.starts} executions started, at most "
        f"{stretch.most_running} running at once (limit {stretch.limit}); SIGTERM: "
        f"{exits_detail(stretch.exits)}",
        () if ok else tuple(f"      pgbouncer: {line}" for line in pooled_log.splitlines()[-5:]),
    )
