"""What the orchestrator prints: the tables on stdout, progress on stderr.

Formatting only: each section's intro, headers and rows are built here
from the children's results, so the layout of the report can be read (and
changed) apart from running it. Figures go to stdout, so ``> file`` keeps
the report; progress and child log tails go to stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .checks import Target, connection_limit, median, rate, ratio_to_baseline
from .plan import CONCURRENCY, HOLD, DrainVariant, Plan
from .protocol import Result

Row = list[Any]


def progress(message: str) -> None:
    """A line on stderr, at once: a long run shows where it is."""
    print(message, file=sys.stderr, flush=True)


def emit(lines: Sequence[str] | str = "") -> None:
    """Lines of the report on stdout; no argument prints an empty line."""
    for line in [lines] if isinstance(lines, str) else lines:
        print(line, flush=True)


def load_average() -> str:
    """The 1, 5 and 15 minute load: how busy the neighbours were, for reading the figures."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- tables ---------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A plain-text table: numbers right-aligned, text left-aligned, None as ``-``."""
    cells = [[str(h) for h in headers]] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(row[i]) for row in rows if row[i] not in (None, ""))
        for i in range(len(headers))
    ]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(row, widths, numeric, strict=True)
        ).rstrip()

    return [line(cells[0]), line(["-" * w for w in widths])] + [line(row) for row in cells[1:]]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) or (isinstance(value, str) and value[:1].isdigit())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool | None) -> str:
    """A target's cell: ``met``, ``MISSED``, or ``-`` when there is no figure to judge."""
    return "-" if ok is None else ("met" if ok else "MISSED")


def target_lines(targets: Sequence[Target]) -> list[str]:
    """All targets together at the end, so a reader finds the verdicts in one place."""
    return ["Targets (PostgreSQL; reported, not asserted):"] + [
        f"  {verdict(target.ok):<7} {target.name}" for target in targets
    ]


# -- 1+2. drain -------------------------------------------------------------------

DRAIN_HEADERS = ["database", "variant", "runs", "instr/s", "range", "baseline", "vs baseline"]
DRAIN_HEADERS += ["queries/instr", "instr/cycle", "CPU s", "CPU us/instr", "peak MiB"]


EXECUTOR_HEADERS = ["executor", "runs", "instr/s", "range", "vs ideal", "CPU us/instr", "peak MiB"]


def executor_row(
    label: str, runs: Sequence[Result], rate_median: float | None, ideal: float
) -> Row:
    """One executor's drain: its median rate against the ideal."""
    if not runs or rate_median is None:
        return [label, 0, None, None, None, None, None]
    rates = [rate(r) for r in runs]
    return [
        label,
        len(runs),
        rate_median,
        f"{min(rates):,.0f}-{max(rates):,.0f}",
        f"{rate_median / ideal:.2f}x",
        median([r["cpu"] / r["instructions"] * 1e6 for r in runs]),
        median([r["peak_rss_mb"] for r in runs]),
    ]


def drain_intro(plan: Plan) -> str:
    """What the drain table measured, with the sizes of this run."""
    return (
        f"1+2. Drain: {plan.drain_accounts:,} pending accounts (SQLite: "
        f"{plan.sqlite_drain_accounts:,}), concurrency {CONCURRENCY}, delay 0 s after a "
        f"cycle with work, 5 ms after an empty one. PostgreSQL variants alternate, "
        f"{plan.drain_runs} runs each; figures are medians. 'vs baseline': instr/s over "
        "that of the baseline named in 'baseline' (the one doing the same database work "
        "per instruction), median of the ratios within each round (in brackets: ratio of "
        "the medians). The Node row is the original planton doing the psycopg "
        "baseline's statements; the row under it is the complete-only receiver's "
        "instr/s over Node's, by round as well."
    )


def drain_rows(
    database: str,
    variants: Sequence[DrainVariant],
    results: Mapping[str, list[Result]],
    not_run: Mapping[str, str] | None = None,
) -> list[Row]:
    """One row per variant: medians over its successful runs.

    ``not_run``: variants left out on purpose, by key, with the reason their
    row shows (the Node one where there is no node).
    """
    rows = []
    for variant in variants:
        # No baseline runs on SQLite: nothing to compare with there.
        against = variant.baseline if variant.baseline in results else None
        runs = results.get(variant.key, [])
        if not_run and variant.key in not_run:
            label = f"{variant.label}: not run ({not_run[variant.key]})"
            rows.append([database, label, 0, None, None, against] + [None] * 6)
            continue
        if not runs:
            rows.append([database, variant.label, 0, None, None, against] + [None] * 6)
            continue
        rates = [rate(r) for r in runs]
        cycles = median([r["queries"].get("CYCLE", 0) for r in runs])
        rows.append(
            [
                database,
                variant.label,
                len(runs),
                median(rates),
                f"{min(rates):,.0f}-{max(rates):,.0f}",
                against,
                _ratio_cell(ratio_to_baseline(results, variant.key, against)),
                median([r["query_total"] / r["instructions"] for r in runs]),
                median([r["instructions"] / cycles for r in runs]) if cycles else None,
                median([r["cpu"] for r in runs]),
                median([r["cpu"] / r["instructions"] * 1e6 for r in runs]),
                median([r["peak_rss_mb"] for r in runs]),
            ]
        )
    return rows


def versus_row(database: str, label: str, against: str, ratios: tuple[float, float] | None) -> Row:
    """A row with only a ratio: one variant's instr/s over another's (complete-only / Node)."""
    return [database, label, None, None, None, against, _ratio_cell(ratios)] + [None] * 5


def _ratio_cell(ratios: tuple[float, float] | None) -> str:
    if ratios is None:
        return "-"
    return f"{ratios[1]:.2f}x ({ratios[0]:.2f}x)"


def thread_lines(
    database: str, variants: Sequence[DrainVariant], results: Mapping[str, list[Result]]
) -> list[str]:
    """Where each django-planton variant's CPU went, by thread (the baselines have one)."""
    return [
        f"  {database:<10} {variant.label:<38} {_threads(results[variant.key])}"
        for variant in variants
        if results.get(variant.key) and variant.is_django_planton
    ]


def _threads(runs: list[Result]) -> str:
    """``worker 1.00, listener 0.08``: median CPU seconds by thread, busiest first."""
    names = {name for r in runs for name in r.get("threads", {})}
    parts = []
    for name in sorted(names, key=lambda n: -(median([r["threads"].get(n, 0) for r in runs]) or 0)):
        seconds = median([r["threads"].get(name, 0.0) for r in runs]) or 0.0
        if seconds >= 0.01:
            parts.append(f"{name.removeprefix('planton-')} {seconds:.2f}")
    return ", ".join(parts) or "-"


# -- 3. slot refill ---------------------------------------------------------------

REFILL_HEADERS = [
    "database",
    "completed by",
    "instr",
    "gap median ms",
    "gap p95 ms",
    "gap max ms",
    "of which wake ms",
    "cycles/instr",
    "instr/s",
    "idle task attempts/s",
    "target median < 10 ms",
]
REFILL_INTRO = (
    f"3. Slot refill: concurrency 1, delay 1 s after every cycle; each execution is "
    f"completed {HOLD * 1000:.0f} ms after dispatch by another thread (in-process "
    f"signal) or another process (PostgreSQL NOTIFY). Gap = next started_at - "
    "previous ended_at; 'of which wake' is the median part before the refilling "
    "cycle began, the rest is that cycle up to its dispatch."
)


def refill_row(
    database: str, label: str, accounts: int, result: Result | None, ok: bool | None
) -> Row:
    """One refill run; a run without figures keeps its row, so the table shows it failed."""
    if not result or "gap_median_ms" not in result:
        return [database, label, accounts] + [None] * 8
    return [
        database,
        label,
        accounts,
        result["gap_median_ms"],
        result["gap_p95_ms"],
        result["gap_max_ms"],
        result["wake_median_ms"],
        result["cycles"] / accounts if result["cycles"] else None,
        result["instructions"] / result["wall"],
        result["idle_attempts_per_s"],
        verdict(ok),
    ]


# -- 3b. back-off -----------------------------------------------------------------

BACKOFF_HEADERS = ["database", "phase", "seconds", "attempts", "cycles", "expected attempts"]


def backoff_intro(plan: Plan) -> str:
    """What the back-off table measured, with the length of this run's phases."""
    return (
        f"3b. Back-off: one task whose schedule finds nothing, delay 1 s, over "
        f"{plan.backoff_seconds:.0f} s; then again while executions of it end every 20 ms "
        f"(each end is a wake-up). Attempts = schedule calls; cycles = reads of its row."
    )


def backoff_rows(database: str, seconds: float, result: Result | None) -> list[Row]:
    """One row per phase; none for a run without a result (its failure is reported)."""
    if not result or "phases" not in result:
        return []
    return [
        [database, phase, seconds, figures["attempts"], figures["cycles"], f"~{seconds:.0f}"]
        for phase, figures in result["phases"].items()
    ]


# -- 4. idle ----------------------------------------------------------------------

IDLE_HEADERS = [
    "database",
    "tasks",
    "workers",
    "seconds",
    "CPU share",
    "CPU ms/attempt",
    "attempts/s",
    "asked for",
    "queries/s",
    "queries/attempt",
    "connections",
    "peak MiB",
]


def idle_intro(plan: Plan) -> str:
    """What the idle table measured, with the lengths of this run."""
    return (
        f"4. Idle: {plan.idle_tasks} tasks whose schedules find nothing, delay 1 s, "
        f"measured over {plan.idle_seconds:.0f} s (SQLite {plan.sqlite_idle_seconds:.0f} s) "
        f"after {plan.idle_warmup:.0f} s of warm-up. Connections: most seen in "
        f"pg_stat_activity, sampled every 0.5 s."
    )


def idle_row(database: str, result: Result) -> Row:
    """One idle run; connections are shown against what the runner may open."""
    connections = result["connections_max"]
    limit = connection_limit(result["workers"])
    return [
        database,
        result["tasks"],
        result["workers"],
        result["seconds"],
        f"{100 * result['cpu_share']:.1f}%",
        1000 * result["cpu"] / result["attempts"] if result["attempts"] else None,
        result["attempts_per_s"],
        result["tasks"] * 1.0,  # asked for: one attempt per task per second
        result["queries_per_s"],
        result["queries_per_attempt"],
        "-" if connections is None else f"{connections} (<= {limit})",
        result["peak_rss_mb"],
    ]
