"""What the orchestrator prints: the tables on stdout, progress on stderr.

Formatting only: each section's intro, headers and rows are built here
from the children's results, so the layout of the report can be read (and
changed) apart from running it. Figures go to stdout, so ``> file`` keeps
the report; progress and child log tails go to stderr.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .checks import (
    MAX_SCALE_US_PER_ATTEMPT,
    Target,
    connection_limit,
    median,
    rate,
    ratio_to_baseline,
    spread,
)
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


EXECUTOR_HEADERS = ["executor", "runs", "instr/s", "range", "vs ideal", "vs threaded loop"]
EXECUTOR_HEADERS += ["CPU us/instr", "peak MiB"]


def executor_row(
    label: str,
    runs: Sequence[Result],
    rate_median: float | None,
    ideal: float,
    loop_rate: float | None,
) -> Row:
    """One executor's drain: its median rate against the ideal and the threaded loop's.

    ``loop_rate``: the hand-written threaded loop's median rate in the same
    run, or None when it has no successful run.
    """
    if not runs or rate_median is None:
        return [label, 0, None, None, None, None, None, None]
    rates = [rate(r) for r in runs]
    return [
        label,
        len(runs),
        rate_median,
        f"{min(rates):,.0f}-{max(rates):,.0f}",
        f"{rate_median / ideal:.2f}x",
        f"{rate_median / loop_rate:.2f}x" if loop_rate else None,
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


# -- 6. scale ---------------------------------------------------------------------

SCALE_HEADERS = [
    "tasks",
    "seconds",
    "CPU share",
    "CPU us/attempt",
    "attempts/s",
    "asked for",
    "queries/attempt",
    "server rows read/attempt",
    "connections",
    "CPU us/attempt by thread",
    "peak MiB",
]


def scale_intro(plan: Plan) -> str:
    """What the cost curve measured, with the sizes of this run."""
    counts = ", ".join(f"{n:,}" for n in plan.scale_tasks)
    return (
        f"6a. Scale, one runner: {counts} tasks whose schedules find nothing, delay 1 s, "
        f"PostgreSQL, default workers and batch size; {plan.scale_seconds:.0f} s measured "
        f"after {plan.scale_warmup:.0f} s of warm-up. CPU: the runner process's (the "
        "benchmark's connection sampler left out); target <= "
        f"{MAX_SCALE_US_PER_ATTEMPT:.0f} us per attempt (10,000 tasks: 10% of a core). "
        "Server rows read: pg_stat_database's tup_returned + tup_fetched over the attempts "
        "(its counters lag up to a second)."
    )


def scale_row(tasks: int, result: Result | None) -> Row:
    """One count of idle tasks on one runner; a run without figures keeps its row."""
    if not result or "cpu_share" not in result:
        return [tasks] + [None] * (len(SCALE_HEADERS) - 1)
    connections = result["connections_max"]
    server, attempts = result.get("server"), result["attempts"]
    return [
        result["tasks"],
        result["seconds"],
        f"{100 * result['cpu_share']:.1f}%",
        result["cpu_us_per_attempt"],
        result["attempts_per_s"],
        result["tasks"] * 1.0,
        result["queries_per_attempt"],
        server["rows_read"] / attempts if server and attempts else None,
        "-" if connections is None else f"{connections} (<= {connection_limit(result['workers'])})",
        _per_attempt_threads(result),
        result["peak_rss_mb"],
    ]


def loop_floor_line(result: Result | None, largest: Row) -> str:
    """6c: the loop alone at the curve's largest count, against that row's CPU per attempt."""
    if not result or result.get("cpu_us_per_attempt") is None:
        return "6c. The loop alone: not measured (see the run's problems)."
    floor = result["cpu_us_per_attempt"]
    runner = largest[SCALE_HEADERS.index("CPU us/attempt")]
    share = f", {floor / runner:.0%} of the runner's {runner:.1f} us" if runner else ""
    return (
        f"6c. The loop alone (a cycle runner that does nothing, no database), "
        f"{result['tasks']:,} tasks: {floor:.1f} us of CPU per attempt{share}; "
        f"{result['attempts_per_s']:,.0f} attempts/s."
    )


def _per_attempt_threads(result: Result) -> str:
    """``worker 12, timer 3``: each thread's CPU per attempt in us, busiest first."""
    attempts = result.get("attempts") or 0
    if not attempts:
        return "-"
    threads = {
        name.removeprefix("planton-"): 1e6 * seconds / attempts
        for name, seconds in result.get("threads", {}).items()
        if not name.startswith("bench-")
    }
    parts = [
        f"{name} {value:.1f}"
        for name, value in sorted(threads.items(), key=lambda item: -item[1])
        if value >= 0.05
    ]
    return ", ".join(parts) or "-"


FLEET_HEADERS = [
    "runners",
    "tasks",
    "busy",
    "seconds",
    "attempts/s",
    "asked for",
    "instr/s",
    "stmts/s clients",
    "xact/s server",
    "stmts/attempt",
    "lock waits max",
    "mean",
    "connections",
    "CPU/runner mean",
    "max",
    "CPU total",
    "CPU us/attempt",
    "shortest gap ms",
]


def fleet_intro(plan: Plan) -> str:
    """What the fleet table measured, with the sizes of this run."""
    return (
        f"6b. Scale, {plan.fleet_runners} runner processes on the same {plan.fleet_tasks:,} "
        f"tasks (delay 1 s), PostgreSQL; {plan.fleet_warmup:.0f} s of warm-up, then "
        f"{plan.fleet_seconds:.0f} s measured. Busy run: {plan.fleet_busy} of the tasks drain "
        f"{plan.fleet_accounts_per_task} accounts each (created when the window starts; "
        "concurrency 5, delay 0 after work, receivers mark the account and complete), "
        "measured until drained (instr/s: accounts over the time to drain them) and at "
        "least as long. attempts/s: the idle tasks' schedule calls, all runners "
        "together, against what their delays ask for. stmts/s clients: what the runners "
        "sent (no BEGIN/COMMIT); xact/s server: pg_stat_database's transactions less the "
        "benchmark's own (its counters lag up to a second). Lock waits: requests not "
        "granted in pg_locks, sampled every 100 ms. CPU: % of one core per runner process; "
        "CPU us/attempt: all runners' CPU over all their attempts (with busy tasks, their "
        "receivers' CPU is in it). "
        "Shortest gap: between two attempts of one idle task, across runners."
    )


def fleet_row(result: Result | None) -> Row:
    """One fleet run; a run without figures keeps an empty row."""
    if not result or "cpu_by_runner" not in result:
        return [None] * len(FLEET_HEADERS)
    wall = result["seconds"]
    cpus = [cpu for cpu in result["cpu_by_runner"] if cpu is not None]
    server = result["server"]
    transactions = server["transactions"]
    return [
        result["runners"],
        result["tasks"],
        result["busy"],
        wall,
        result["idle_attempts_per_s"],
        result["idle_asked_per_s"],
        result["instructions"] / result["drained_after"] if result["drained_after"] else None,
        result["client_statements"] / wall,
        transactions / wall if transactions is not None else None,
        result["client_statements"] / result["attempts"] if result["attempts"] else None,
        result["waiting_max"],
        result["waiting_mean"],
        result["connections_max"],
        f"{100 * statistics.fmean(cpus):.1f}%" if cpus else None,
        f"{100 * max(cpus):.1f}%" if cpus else None,
        f"{100 * sum(cpus):.0f}%" if cpus else None,
        1e6 * sum(cpus) * wall / result["attempts"] if cpus and result["attempts"] else None,
        1000 * result["shortest_gap"] if result["shortest_gap"] is not None else None,
    ]


def spread_line(label: str, counts: Sequence[float]) -> str:
    """``label: 12.5% 12.1% ...; max/min 1.07, CV 0.03``: how evenly the runners share."""
    found = spread(counts)
    if found is None:
        return f"  {label}: none"
    ratio = "-" if found.max_over_min is None else f"{found.max_over_min:.2f}"
    shares = " ".join(f"{100 * share:.1f}%" for share in found.shares)
    return f"  {label}: {shares}; max/min {ratio}, CV {found.cv:.2f}"


def fleet_spread_lines(result: Result | None) -> list[str]:
    """Each runner's share of the attempts and, with busy tasks, of the dispatched work."""
    if not result or "attempts_by_runner" not in result:
        return []
    runs = f"{result['runners']} runners, {result['busy']} busy"
    lines = [spread_line(f"{runs}: attempts by runner", result["attempts_by_runner"])]
    if result["busy"]:
        dispatched = result["dispatched_by_runner"]
        lines.append(spread_line(f"{runs}: instructions dispatched by runner", dispatched))
        top = sorted(result.get("top_runner_share_by_task", {}).values())
        if top:
            lines.append(
                f"  {runs}: share of a busy task's instructions dispatched by its busiest "
                f"runner: median {100 * statistics.median(top):.0f}%, "
                f"min {100 * top[0]:.0f}%, max {100 * top[-1]:.0f}%"
            )
    server, wall = result["server"], result["seconds"]
    statements = server.get("statements")
    per_s = f"{statements / wall:,.0f}" if statements is not None else "- (no pg_stat_statements)"
    lines.append(
        f"  {runs}: server rows read/s {server['rows_read'] / wall:,.0f}, rows written/s "
        f"{server['rows_written'] / wall:,.0f}, statements/s {per_s}"
    )
    waits = sorted(result.get("waiting_for", {}).items(), key=lambda item: -item[1])
    if waits:
        kinds = ", ".join(f"{kind} ({count})" for kind, count in waits[:4])
        lines.append(f"  {runs}: lock waits seen (samples): {kinds}")
    return lines
