"""Run every workload and print the table: ``python -m benchmarks [--quick]``.

This process only orchestrates: it starts a throwaway PostgreSQL with
``scripts/postgres.sh`` (on its own port, so the test server is left alone),
makes a SQLite file, migrates both, and runs each measured variant in a fresh
child process (:mod:`benchmarks.workloads`), alternating the drain variants so
that a noisy neighbour hurts all of them alike. It exits non-zero when a run
failed to drain or a correctness check failed; figures are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from .harness import RESULT_PREFIX

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PGPORT = "54339"


@dataclass(frozen=True)
class Plan:
    """How much of each workload to run."""

    drain_accounts: int
    drain_runs: int
    sqlite_drain_accounts: int
    refill_accounts: int
    sqlite_refill_accounts: int
    idle_tasks: int
    idle_warmup: float
    idle_seconds: float
    sqlite_idle_seconds: float
    backoff_seconds: float
    sqlite_backoff: bool
    timeout: float


FULL = Plan(
    drain_accounts=20_000,
    drain_runs=3,
    sqlite_drain_accounts=20_000,
    refill_accounts=2_000,
    sqlite_refill_accounts=500,
    idle_tasks=500,
    idle_warmup=3.0,
    idle_seconds=20.0,
    sqlite_idle_seconds=10.0,
    backoff_seconds=5.0,
    sqlite_backoff=True,
    timeout=600.0,
)
QUICK = Plan(
    drain_accounts=1_500,
    drain_runs=2,
    sqlite_drain_accounts=1_000,
    refill_accounts=100,
    sqlite_refill_accounts=100,
    idle_tasks=500,
    idle_warmup=2.0,
    idle_seconds=5.0,
    sqlite_idle_seconds=3.0,
    backoff_seconds=5.0,
    sqlite_backoff=False,
    timeout=120.0,
)

CONCURRENCY = 50
HOLD = 0.010


class DrainVariant(NamedTuple):
    key: str
    label: str
    workload: str
    params: dict[str, str]
    #: The key of the baseline that does the same database work; None for a baseline.
    baseline: str | None = None


# Each django-planton variant is compared with the baseline that does the same
# database work per instruction.
DRAIN_VARIANTS = [
    DrainVariant(
        "single",
        "per-instruction receiver",
        "drain",
        {"receiver": "single"},
        "baseline-per-instruction",
    ),
    DrainVariant("batch", "batch receiver", "drain", {"receiver": "batch"}, "baseline"),
    DrainVariant(
        "complete-only",
        "complete-only receiver",
        "drain",
        {"receiver": "complete-only"},
        "baseline",
    ),
    DrainVariant("baseline", "psycopg loop (baseline)", "baseline", {"mark": "claim"}),
    DrainVariant(
        "baseline-per-instruction",
        "psycopg loop, per-instruction (baseline)",
        "baseline",
        {"mark": "receiver"},
    ),
]
# With --prepared: the per-instruction receiver with psycopg's prepared statements.
PREPARED_VARIANT = DrainVariant(
    "prepared",
    "per-instruction, prepared statements",
    "drain",
    {"receiver": "single"},
    "baseline-per-instruction",
)


@dataclass
class Database:
    name: str
    url: str


@dataclass
class Session:
    """Runs children, keeps their logs, collects failures."""

    log_dir: Path
    failures: list[str] = field(default_factory=list)
    runs: int = 0

    def run(
        self,
        database: Database,
        workload: str,
        params: dict[str, Any],
        *,
        label: str,
        env: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        self.runs += 1
        log = self.log_dir / f"{self.runs:03d}-{database.name}-{workload}.log"
        child_env = {
            **os.environ,
            "DATABASE_URL": database.url,
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            **(env or {}),
        }
        command = [sys.executable, "-m", "benchmarks.workloads", workload, json.dumps(params)]
        started = time.monotonic()
        stdout, returncode = "", None
        with log.open("w") as stderr:
            try:
                process = subprocess.run(
                    command,
                    cwd=ROOT,
                    env=child_env,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    timeout=params.get("timeout", 600) + 120,
                )
                stdout, returncode = process.stdout, process.returncode
            except subprocess.TimeoutExpired:
                pass  # killed; reported below as a run without a result
        elapsed = time.monotonic() - started
        result = None
        for line in stdout.splitlines():
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX) :])
        problems = [] if result else [f"no result (exit {returncode}), see {log}"]
        if result:
            problems = result.get("problems", [])
        if returncode != 0 and result:
            problems.append(f"exit {returncode}, see {log}")
        status = "ok" if not problems else "FAILED: " + "; ".join(problems)
        progress(f"  {database.name:<10} {label:<50} {elapsed:5.1f} s  {status}")
        if problems:
            self.failures.append(f"{database.name} {label}: {'; '.join(problems)}")
            tail = log.read_text().strip().splitlines()[-15:]
            for line in tail:
                progress(f"      | {line}")
        return result


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the machine --------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def postgres_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        (version,) = conn.execute("SHOW server_version").fetchone()
    return version


def machine_lines(postgres_url: str | None) -> list[str]:
    import sqlite3

    versions = [
        f"Python {platform.python_version()}",
        f"Django {metadata.version('django')}",
        f"psycopg {metadata.version('psycopg')}",
        f"PostgreSQL {postgres_version(postgres_url) if postgres_url else 'not run'}",
        f"SQLite {sqlite3.sqlite_version}",
    ]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"machine:  {os.cpu_count()} cores, {cpu_model()}, {platform.system()} "
        f"{platform.release()}, load average {load} at start",
        f"software: {', '.join(versions)}",
    ]


# -- databases ------------------------------------------------------------------


def start_postgres() -> tuple[str, dict[str, str]]:
    port = os.environ.get("PLANTON_PGPORT", DEFAULT_PGPORT)
    env = {
        **os.environ,
        "PLANTON_PGPORT": port,
        "PLANTON_PGROOT": os.environ.get("PLANTON_PGROOT", f"/tmp/planton-bench-postgres-{port}"),
    }
    url = (
        subprocess.run(
            ["bash", "scripts/postgres.sh", "start"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return url, env


def stop_postgres(env: dict[str, str]) -> None:
    subprocess.run(["bash", "scripts/postgres.sh", "stop"], cwd=ROOT, env=env, check=False)


def migrate(database: Database) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database.url,
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        },
        check=True,
    )


# -- the table ------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
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


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


# -- the workloads --------------------------------------------------------------


def run_drains(
    session: Session,
    database: Database,
    plan: Plan,
    *,
    accounts: int,
    runs: int,
    variants: list[DrainVariant],
) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {variant.key: [] for variant in variants}
    for run in range(1, runs + 1):
        for variant in variants:
            params = {
                "accounts": accounts,
                "concurrency": CONCURRENCY,
                "timeout": plan.timeout,
                **variant.params,
            }
            env = {"PLANTON_BENCH_PREPARED": "1"} if variant.key == "prepared" else None
            result = session.run(
                database, variant.workload, params, label=f"drain {variant.label} #{run}", env=env
            )
            if result and not result.get("problems"):
                results[variant.key].append({**result, "round": run})
    return results


def rate(result: dict) -> float:
    return result["instructions"] / result["wall"]


def ratio_to_baseline(
    results: dict[str, list[dict]], key: str, baseline: str | None
) -> tuple[float, float] | None:
    """Median instr/s over that of ``baseline``, and the median of the ratios within each round.

    The variants of one round ran one after the other, so their ratio is
    less disturbed by a neighbour's load than the ratio of two medians.
    """
    if baseline is None:
        return None
    base = results.get(baseline) or []
    runs = results.get(key) or []
    if not base or not runs:
        return None
    base_by_round = {r["round"]: rate(r) for r in base}
    paired = [rate(r) / base_by_round[r["round"]] for r in runs if r["round"] in base_by_round]
    overall = median([rate(r) for r in runs]) / median([rate(r) for r in base])
    return overall, median(paired) if paired else overall


def drain_rows(
    database: str, variants: list[DrainVariant], results: dict[str, list[dict]]
) -> list[list[Any]]:
    rows = []
    for key, label, _, _, baseline in variants:
        # No baseline runs on SQLite: nothing to compare with there.
        against = baseline if baseline in results else None
        runs = results[key]
        if not runs:
            rows.append([database, label, 0, None, None, against] + [None] * 6)
            continue
        rates = [rate(r) for r in runs]
        cycles = median([r["queries"].get("CYCLE", 0) for r in runs])
        rows.append(
            [
                database,
                label,
                len(runs),
                median(rates),
                f"{min(rates):,.0f}-{max(rates):,.0f}",
                against,
                _ratio_cell(ratio_to_baseline(results, key, against)),
                median([r["query_total"] / r["instructions"] for r in runs]),
                median([r["instructions"] / cycles for r in runs]) if cycles else None,
                median([r["cpu"] for r in runs]),
                median([r["cpu"] / r["instructions"] * 1e6 for r in runs]),
                median([r["peak_rss_mb"] for r in runs]),
            ]
        )
    return rows


def _ratio_cell(ratios: tuple[float, float] | None) -> str:
    if ratios is None:
        return "-"
    return f"{ratios[1]:.2f}x ({ratios[0]:.2f}x)"


def _threads(runs: list[dict]) -> str:
    names = {name for r in runs for name in r.get("threads", {})}
    parts = []
    for name in sorted(names, key=lambda n: -median([r["threads"].get(n, 0) for r in runs])):
        seconds = median([r["threads"].get(name, 0.0) for r in runs])
        if seconds >= 0.01:
            parts.append(f"{name.removeprefix('planton-')} {seconds:.2f}")
    return ", ".join(parts) or "-"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="the short form for CI (< 2 minutes)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument(
        "--prepared",
        action="store_true",
        help="add a drain variant with psycopg server-side binding and prepared "
        "statements (Django leaves them off)",
    )
    parser.add_argument(
        "--postgres-url",
        help="use this PostgreSQL database instead of starting one "
        "(its accounts and scheduler tables are emptied!)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.monotonic()

    log_dir = Path(tempfile.mkdtemp(prefix="planton-bench-logs-"))
    shm = Path("/dev/shm")
    sqlite_dir = Path(tempfile.mkdtemp(prefix="planton-bench-", dir=shm if shm.is_dir() else None))
    session = Session(log_dir)
    pg_env = None

    def emit(lines: list[str] | str = "") -> None:
        for line in [lines] if isinstance(lines, str) else lines:
            print(line, flush=True)

    try:
        if args.postgres_url:
            pg_url = args.postgres_url
        else:
            progress("Starting PostgreSQL...")
            pg_url, pg_env = start_postgres()
        postgres = Database("postgresql", pg_url)
        sqlite = Database("sqlite", f"sqlite:///{sqlite_dir / 'bench.sqlite3'}")
        databases = [postgres] + ([] if args.no_sqlite else [sqlite])
        for database in databases:
            migrate(database)

        emit(f"django-planton benchmarks ({'quick' if args.quick else 'full'} run)")
        emit(machine_lines(pg_url))
        workers = int(os.environ.get("PLANTON_MAX_WORKERS", "4"))
        emit(
            f"settings: benchmarks.settings (DEBUG off, client-side binding, no prepared "
            f"statements unless said), PLANTON_MAX_WORKERS={workers}"
        )
        emit()

        # 1 and 2: drain, and the baseline -----------------------------------
        progress("1. Drain")
        variants = list(DRAIN_VARIANTS)
        if args.prepared:
            # After the django-planton variants, before the baselines.
            first_baseline = next(i for i, v in enumerate(variants) if v.workload == "baseline")
            variants.insert(first_baseline, PREPARED_VARIANT)
        pg_results = run_drains(
            session,
            postgres,
            plan,
            accounts=plan.drain_accounts,
            runs=plan.drain_runs,
            variants=variants,
        )
        rows = drain_rows("postgresql", variants, pg_results)
        sqlite_results: dict[str, list[dict]] = {}
        sqlite_variants = [v for v in DRAIN_VARIANTS if v.workload != "baseline"]
        if not args.no_sqlite:
            sqlite_results = run_drains(
                session,
                sqlite,
                plan,
                accounts=plan.sqlite_drain_accounts,
                runs=1,
                variants=sqlite_variants,
            )
            rows += drain_rows("sqlite", sqlite_variants, sqlite_results)
        emit(
            f"1+2. Drain: {plan.drain_accounts:,} pending accounts (SQLite: "
            f"{plan.sqlite_drain_accounts:,}), concurrency {CONCURRENCY}, delay 0 s after a "
            f"cycle with work, 5 ms after an empty one. PostgreSQL variants alternate, "
            f"{plan.drain_runs} runs each; figures are medians. 'vs baseline': instr/s over "
            "that of the baseline named in 'baseline' (the one doing the same database work "
            "per instruction), median of the ratios within each round (in brackets: ratio of "
            "the medians)."
        )
        headers = ["database", "variant", "runs", "instr/s", "range", "baseline", "vs baseline"]
        headers += ["queries/instr", "instr/cycle", "CPU s", "CPU us/instr", "peak MiB"]
        emit(table(headers, rows))
        emit("CPU seconds by thread (median):")
        for database, group, group_variants in [
            ("postgresql", pg_results, variants),
            ("sqlite", sqlite_results, sqlite_variants),
        ]:
            for variant in group_variants:
                if group.get(variant.key) and variant.workload != "baseline":
                    emit(f"  {database:<10} {variant.label:<38} {_threads(group[variant.key])}")
        emit()

        # 3. slot refill --------------------------------------------------------
        progress("3. Slot refill")
        refill_rows = []
        refill_targets = []
        refill_runs = [
            (postgres, "thread", plan.refill_accounts),
            (postgres, "process", plan.refill_accounts),
        ]
        if not args.no_sqlite:
            refill_runs.append((sqlite, "thread", plan.sqlite_refill_accounts))
        for database, completer, accounts in refill_runs:
            label = {"thread": "another thread", "process": "another process"}[completer]
            result = session.run(
                database,
                "refill",
                {
                    "accounts": accounts,
                    "hold": HOLD,
                    "completer": completer,
                    "timeout": plan.timeout,
                },
                label=f"refill, completed by {label}",
            )
            if not result or "gap_median_ms" not in result:
                refill_rows.append([database.name, label, accounts] + [None] * 8)
                continue
            ok = result["gap_median_ms"] < 10 if database is postgres else None
            if ok is not None:
                refill_targets.append((f"slot refill, {label}: median gap < 10 ms", ok))
            refill_rows.append(
                [
                    database.name,
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
            )
        emit(
            f"3. Slot refill: concurrency 1, delay 1 s after every cycle; each execution is "
            f"completed {HOLD * 1000:.0f} ms after dispatch by another thread (in-process "
            f"signal) or another process (PostgreSQL NOTIFY). Gap = next started_at - "
            "previous ended_at; 'of which wake' is the median part before the refilling "
            "cycle began, the rest is that cycle up to its dispatch."
        )
        emit(
            table(
                [
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
                ],
                refill_rows,
            )
        )
        emit()

        # 3b. back-off ----------------------------------------------------------
        progress("3b. Back-off of an idle task")
        backoff_rows = []
        for database in [postgres] + (
            [sqlite] if plan.sqlite_backoff and not args.no_sqlite else []
        ):
            result = session.run(
                database, "backoff", {"seconds": plan.backoff_seconds}, label="idle task back-off"
            )
            if not result or "phases" not in result:
                continue
            for phase, figures in result["phases"].items():
                backoff_rows.append(
                    [
                        database.name,
                        phase,
                        plan.backoff_seconds,
                        figures["attempts"],
                        figures["cycles"],
                        f"~{plan.backoff_seconds:.0f}",
                    ]
                )
        emit(
            f"3b. Back-off: one task whose schedule finds nothing, delay 1 s, over "
            f"{plan.backoff_seconds:.0f} s; then again while executions of it end every 20 ms "
            f"(each end is a wake-up). Attempts = schedule calls; cycles = reads of its row."
        )
        emit(
            table(
                ["database", "phase", "seconds", "attempts", "cycles", "expected attempts"],
                backoff_rows,
            )
        )
        emit()

        # 4. idle ---------------------------------------------------------------
        progress("4. Idle")
        idle_rows = []
        idle_targets = []
        for database, seconds in [(postgres, plan.idle_seconds)] + (
            [] if args.no_sqlite else [(sqlite, plan.sqlite_idle_seconds)]
        ):
            result = session.run(
                database,
                "idle",
                {"tasks": plan.idle_tasks, "warmup": plan.idle_warmup, "seconds": seconds},
                label=f"idle, {plan.idle_tasks} tasks",
            )
            if not result or "cpu_share" not in result:
                continue
            limit = result["workers"] + 2
            expected = result["tasks"] * 1.0  # one attempt per task per second
            cpu_ok = result["cpu_share"] < 0.02
            queries_ok = result["attempts_per_s"] <= expected * 1.05
            connections = result["connections_max"]
            connections_ok = None if connections is None else connections <= limit
            if database is postgres:
                idle_targets += [
                    ("idle: CPU < 2% of one core", cpu_ok),
                    ("idle: connections <= workers + 2", connections_ok),
                    ("idle: queries/s no more than the delays ask for", queries_ok),
                ]
            idle_rows.append(
                [
                    database.name,
                    result["tasks"],
                    result["workers"],
                    result["seconds"],
                    f"{100 * result['cpu_share']:.1f}%",
                    1000 * result["cpu"] / result["attempts"] if result["attempts"] else None,
                    result["attempts_per_s"],
                    expected,
                    result["queries_per_s"],
                    result["queries_per_attempt"],
                    "-" if connections is None else f"{connections} (<= {limit})",
                    result["peak_rss_mb"],
                ]
            )
        emit(
            f"4. Idle: {plan.idle_tasks} tasks whose schedules find nothing, delay 1 s, "
            f"measured over {plan.idle_seconds:.0f} s (SQLite {plan.sqlite_idle_seconds:.0f} s) "
            f"after {plan.idle_warmup:.0f} s of warm-up. Connections: most seen in "
            f"pg_stat_activity, sampled every 0.5 s."
        )
        emit(
            table(
                [
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
                ],
                idle_rows,
            )
        )
        emit()

        # targets ---------------------------------------------------------------
        targets = []
        for variant in variants:
            if variant.baseline is None:
                continue
            ratios = ratio_to_baseline(pg_results, variant.key, variant.baseline)
            ok = None if ratios is None else ratios[1] >= 0.8
            figure = "no result" if ratios is None else f"{ratios[1]:.2f}x"
            targets.append((f"drain, {variant.label}: >= 0.8x {variant.baseline} ({figure})", ok))
        targets += refill_targets + idle_targets
        emit("Targets (PostgreSQL; reported, not asserted):")
        for name, ok in targets:
            emit(f"  {verdict(ok):<7} {name}")
        emit()
    except subprocess.CalledProcessError as error:
        session.failures.append(f"{' '.join(map(str, error.cmd))} exited {error.returncode}")
    finally:
        if pg_env is not None:
            stop_postgres(pg_env)
        shutil.rmtree(sqlite_dir, ignore_errors=True)

    elapsed = time.monotonic() - started
    if session.failures:
        emit(f"FAILED ({len(session.failures)}), after {elapsed:.0f} s; child logs in {log_dir}:")
        for failure in session.failures:
            emit(f"  {failure}")
        return 1
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    emit(
        f"All {session.runs} runs drained and passed their checks, in {elapsed:.0f} s "
        f"(load average {load} at the end)."
    )
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0
