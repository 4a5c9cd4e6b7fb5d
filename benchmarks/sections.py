"""The sections of the report, each: run its children, print its table, give its targets.

Sections run in the order of the README (drain, slot refill, back-off,
idle, executors, scale); each returns its targets so that they are printed together at the
end. What to run comes from :mod:`benchmarks.plan`, the rules from
:mod:`benchmarks.checks`, the layout from :mod:`benchmarks.report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

from . import report
from .checks import (
    Target,
    cadence_target,
    drain_target,
    executor_target,
    fairness_target,
    idle_targets,
    node_target,
    rate,
    ratio_to_baseline,
    refill_target,
    scale_target,
    spread,
)
from .databases import Database, Databases
from .nodejs import node_unavailable
from .plan import (
    CONCURRENCY,
    EXECUTOR_BASELINE,
    EXECUTOR_CONCURRENCY,
    EXECUTOR_VARIANTS,
    HOLD,
    IDEAL_RATE,
    NODE,
    NODE_COMPARED,
    WORK_MS,
    DrainVariant,
    Plan,
    postgres_variants,
    sqlite_variants,
)
from .protocol import Result
from .report import emit, progress, table
from .session import Session

DrainResults = dict[str, list[Result]]


def run_drains(
    session: Session,
    database: Database,
    plan: Plan,
    *,
    accounts: int,
    runs: int,
    variants: Sequence[DrainVariant],
) -> DrainResults:
    """Each variant ``runs`` times, alternating (A B C A B C ...), so load hurts all alike.

    Only successful runs are kept, each with its ``round`` for the per-round ratios.
    """
    results: DrainResults = {variant.key: [] for variant in variants}
    for round_number in range(1, runs + 1):
        for variant in variants:
            params = {
                "accounts": accounts,
                "concurrency": CONCURRENCY,
                "timeout": plan.timeout,
                **variant.params,
            }
            label = f"drain {variant.label} #{round_number}"
            result = session.run(database, variant.workload, params, label=label, env=variant.env)
            if result and not result.get("problems"):
                results[variant.key].append({**result, "round": round_number})
    return results


def drain_section(
    session: Session, databases: Databases, plan: Plan, *, prepared: bool
) -> list[Target]:
    """1+2: every drain variant on PostgreSQL against its baseline; once each on SQLite."""
    progress("1. Drain")
    pg_variants = postgres_variants(prepared=prepared)
    not_run: dict[str, str] = {}
    reason = node_unavailable()
    if reason is not None:
        not_run[NODE] = reason
        progress(f"  the Node drain is not run: {reason}")
    pg_results = run_drains(
        session,
        databases.postgres,
        plan,
        accounts=plan.drain_accounts,
        runs=plan.drain_runs,
        variants=[v for v in pg_variants if v.key not in not_run],
    )
    rows = report.drain_rows("postgresql", pg_variants, pg_results, not_run)
    node_ratios = ratio_to_baseline(pg_results, NODE_COMPARED, NODE)
    compared = next(v.label for v in pg_variants if v.key == NODE_COMPARED)
    rows.append(report.versus_row("postgresql", f"{compared} / Node", NODE, node_ratios))
    lite_variants = sqlite_variants()
    lite_results: DrainResults = {}
    if databases.sqlite:
        lite_results = run_drains(
            session,
            databases.sqlite,
            plan,
            accounts=plan.sqlite_drain_accounts,
            runs=1,
            variants=lite_variants,
        )
        rows += report.drain_rows("sqlite", lite_variants, lite_results)
    emit(report.drain_intro(plan))
    emit(table(report.DRAIN_HEADERS, rows))
    emit("CPU seconds by thread (median):")
    emit(report.thread_lines("postgresql", pg_variants, pg_results))
    emit(report.thread_lines("sqlite", lite_variants, lite_results))
    emit()
    return [
        drain_target(v.label, v.baseline, ratio_to_baseline(pg_results, v.key, v.baseline))
        for v in pg_variants
        if v.baseline is not None and v.is_django_planton
    ] + [node_target(compared, node_ratios)]


def refill_section(session: Session, databases: Databases, plan: Plan) -> list[Target]:
    """3: how soon a slot freed by another thread or process is filled again."""
    progress("3. Slot refill")
    runs = [
        (databases.postgres, "another thread", "thread", plan.refill_accounts),
        (databases.postgres, "another process", "process", plan.refill_accounts),
    ]
    if databases.sqlite:
        runs.append((databases.sqlite, "another thread", "thread", plan.sqlite_refill_accounts))
    rows: list[report.Row] = []
    targets: list[Target] = []
    for database, label, completer, accounts in runs:
        params = {"accounts": accounts, "hold": HOLD, "completer": completer}
        result = session.run(
            database,
            "refill",
            {**params, "timeout": plan.timeout},
            label=f"refill, completed by {label}",
        )
        ok = None
        if result and "gap_median_ms" in result and database is databases.postgres:
            target = refill_target(label, result["gap_median_ms"])
            targets.append(target)
            ok = target.ok
        rows.append(report.refill_row(database.name, label, accounts, result, ok))
    emit(report.REFILL_INTRO)
    emit(table(report.REFILL_HEADERS, rows))
    emit()
    return targets


def backoff_section(session: Session, databases: Databases, plan: Plan) -> list[Target]:
    """3b: an idle task keeps to its delay, even when its executions keep waking it."""
    progress("3b. Back-off of an idle task")
    rows: list[report.Row] = []
    for database in [databases.postgres] + (
        [databases.sqlite] if plan.sqlite_backoff and databases.sqlite else []
    ):
        seconds = plan.backoff_seconds
        result = session.run(database, "backoff", {"seconds": seconds}, label="idle task back-off")
        rows += report.backoff_rows(database.name, seconds, result)
    emit(report.backoff_intro(plan))
    emit(table(report.BACKOFF_HEADERS, rows))
    emit()
    return []  # its checks fail the run; there is no timing target


def idle_section(session: Session, databases: Databases, plan: Plan) -> list[Target]:
    """4: what many tasks with nothing to do cost in CPU, queries and connections."""
    progress("4. Idle")
    runs = [(databases.postgres, plan.idle_seconds)]
    if databases.sqlite:
        runs.append((databases.sqlite, plan.sqlite_idle_seconds))
    rows: list[report.Row] = []
    targets: list[Target] = []
    for database, seconds in runs:
        result = session.run(
            database,
            "idle",
            {"tasks": plan.idle_tasks, "warmup": plan.idle_warmup, "seconds": seconds},
            label=f"idle, {plan.idle_tasks} tasks",
        )
        if not result or "cpu_share" not in result:
            continue
        if database is databases.postgres:
            targets += idle_targets(result)
        rows.append(report.idle_row(database.name, result))
    emit(report.idle_intro(plan))
    emit(table(report.IDLE_HEADERS, rows))
    emit()
    return targets


def executors_section(session: Session, databases: Databases, plan: Plan) -> list[Target]:
    """5: receivers that take WORK_MS each, under each executor, against the ideal rate."""
    progress("5. Executors")
    results = run_drains(
        session,
        databases.postgres,
        plan,
        accounts=plan.executor_accounts,
        runs=plan.drain_runs,
        variants=EXECUTOR_VARIANTS,
    )
    rates: dict[str, float | None] = {
        key: median([rate(r) for r in runs]) if runs else None for key, runs in results.items()
    }
    loop_rate = rates[EXECUTOR_BASELINE]
    rows = [
        report.executor_row(
            variant.label, results[variant.key], rates[variant.key], IDEAL_RATE, loop_rate
        )
        for variant in EXECUTOR_VARIANTS
    ]
    emit(
        f"5. Executors: {plan.executor_accounts:,} accounts on PostgreSQL, concurrency "
        f"{EXECUTOR_CONCURRENCY}, every receiver waits {WORK_MS} ms, then completes (the "
        f"schedule marked the account; the last Threads row's receivers mark it too); the "
        f"ideal is concurrency / latency = {IDEAL_RATE:,.0f} instr/s. The hand-written "
        "threaded psycopg loop (one claiming thread, a worker thread and connection per "
        "slot) is what plain Python threads reach here for the same work; 'vs threaded "
        "loop': median instr/s over its median. "
        f"{plan.drain_runs} runs each, alternating; medians."
    )
    emit(table(report.EXECUTOR_HEADERS, rows))
    emit()
    return [executor_target("Threads", rates["threads"], IDEAL_RATE, loop_rate=loop_rate)]


def scale_section(session: Session, databases: Databases, plan: Plan) -> list[Target]:
    """6: the cost curve: idle tasks on one runner, then several runners on the same tasks."""
    progress("6. Scale")
    database = databases.postgres
    targets: list[Target] = []
    curve: list[report.Row] = []
    for tasks in plan.scale_tasks:
        params = {"tasks": tasks, "warmup": plan.scale_warmup, "seconds": plan.scale_seconds}
        result = session.run(database, "idle", params, label=f"scale, {tasks:,} idle tasks")
        curve.append(report.scale_row(tasks, result))
        ok = bool(result and "cpu_share" in result)
        targets.append(
            scale_target(
                tasks,
                result["cpu_us_per_attempt"] if result and ok else None,
                result["cpu_share"] if result and ok else None,
            )
        )
    largest = max(plan.scale_tasks)
    params = {"tasks": largest, "warmup": plan.scale_warmup, "seconds": plan.scale_seconds}
    floor = session.run(database, "loop", params, label=f"scale, the loop alone, {largest:,} tasks")
    fleet: list[Result | None] = []
    for busy in (0, plan.fleet_busy):
        params = {
            "runners": plan.fleet_runners,
            "tasks": plan.fleet_tasks,
            "busy": busy,
            "accounts_per_task": plan.fleet_accounts_per_task,
            "warmup": plan.fleet_warmup,
            "seconds": plan.fleet_seconds,
            "timeout": plan.timeout,
        }
        label = f"fleet, {plan.fleet_runners} runners, {plan.fleet_tasks:,} tasks, {busy} busy"
        result = session.run(database, "fleet", params, label=label)
        fleet.append(result if result and "cpu_by_runner" in result else None)
        figures = fleet[-1]
        what = f"{plan.fleet_runners} runners, {busy} busy"
        targets.append(
            cadence_target(
                what,
                figures["idle_attempts_per_s"] if figures else None,
                figures["idle_asked_per_s"] if figures else plan.fleet_tasks - busy,
            )
        )
        if busy:
            dispatched = spread(figures["dispatched_by_runner"]) if figures else None
            targets.append(fairness_target(f"{what}, instructions dispatched", dispatched))
    emit(report.scale_intro(plan))
    emit(table(report.SCALE_HEADERS, curve))
    emit(report.loop_floor_line(floor, curve[-1]))
    emit()
    emit(report.fleet_intro(plan))
    emit(table(report.FLEET_HEADERS, [report.fleet_row(result) for result in fleet]))
    emit("How evenly the runners share (each runner's share, in start order):")
    for result in fleet:
        emit(report.fleet_spread_lines(result))
    emit()
    return targets
