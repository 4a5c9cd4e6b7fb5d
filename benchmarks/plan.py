"""What runs, and how much of it: the full run, the quick one, the drain variants.

Data only, so that what a run measures can be read in one screen and
changed in one place; :mod:`benchmarks.sections` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    #: Accounts drained by each executor variant (receivers that take WORK_MS each).
    executor_accounts: int = 1_000
    #: 6. Scale: one runner's idle tasks, one run per count (the cost curve).
    scale_tasks: tuple[int, ...] = (500, 2_000, 10_000)
    scale_warmup: float = 5.0
    scale_seconds: float = 15.0
    #: 6. Scale: runner processes on the same tasks; a second run with ``fleet_busy``
    #: of them draining ``fleet_accounts_per_task`` accounts each.
    fleet_runners: int = 8
    fleet_tasks: int = 2_000
    fleet_busy: int = 20
    fleet_accounts_per_task: int = 250
    fleet_warmup: float = 5.0
    fleet_seconds: float = 20.0


#: The figures of the README: about 11-13 minutes on 2 cores.
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
    executor_accounts=2_000,
    scale_tasks=(500, 2_000, 10_000),
    scale_warmup=5.0,
    scale_seconds=15.0,
    fleet_runners=8,
    fleet_tasks=2_000,
    fleet_busy=20,
    fleet_accounts_per_task=250,
    fleet_warmup=5.0,
    fleet_seconds=20.0,
)
#: For CI (``--quick``): every workload and check, on less data.
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
    executor_accounts=200,
    scale_tasks=(500, 2_000),
    scale_warmup=2.0,
    scale_seconds=4.0,
    fleet_runners=4,
    fleet_tasks=500,
    fleet_busy=5,
    fleet_accounts_per_task=100,
    fleet_warmup=3.0,
    fleet_seconds=5.0,
)

#: The drain's concurrency: the most instructions of one task running at once.
CONCURRENCY = 50
#: How long after its dispatch the slot-refill run completes each execution, in seconds.
HOLD = 0.010


@dataclass(frozen=True)
class DrainVariant:
    """One way of draining the accounts, run as its own child process."""

    key: str
    label: str
    #: The child's workload: ``drain`` (django-planton), ``baseline`` (psycopg
    #: loop), ``threaded`` (threaded psycopg loop, for the executors) or ``node``
    #: (the original planton on Node).
    workload: str
    params: dict[str, Any] = field(default_factory=dict)
    #: The key of the baseline that does the same database work; None for a baseline.
    baseline: str | None = None
    #: Extra environment of the child (the settings read it).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_baseline(self) -> bool:
        """A psycopg loop: PostgreSQL only, and nothing to compare it with."""
        return self.workload in ("baseline", "threaded")

    @property
    def is_django_planton(self) -> bool:
        """Run by django-planton's runner: on SQLite too, with a target against its baseline."""
        return self.workload == "drain"


# Each django-planton variant is compared with the baseline that does the same
# database work per instruction.
DRAIN_VARIANTS = (
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
    # The original planton (benchmarks/node): the psycopg baseline's statements,
    # on a pool of 10 connections. A reference, run only where node is.
    DrainVariant("node", "planton on Node (pg, pool of 10)", "node", baseline="baseline"),
)
#: The django-planton variant compared with the Node one (the same statements per
#: instruction), and the key of the Node variant.
NODE_COMPARED = "complete-only"
NODE = "node"
# With --prepared: the per-instruction receiver with psycopg's prepared statements.
PREPARED_VARIANT = DrainVariant(
    "prepared",
    "per-instruction, prepared statements",
    "drain",
    {"receiver": "single"},
    "baseline-per-instruction",
    env={"PLANTON_BENCH_PREPARED": "1"},
)


def postgres_variants(*, prepared: bool) -> list[DrainVariant]:
    """The PostgreSQL drain variants, in the order each round runs them.

    The prepared variant, when asked for, comes after the django-planton
    variants and before the baselines.
    """
    variants = list(DRAIN_VARIANTS)
    if prepared:
        first_baseline = next(i for i, v in enumerate(variants) if v.is_baseline)
        variants.insert(first_baseline, PREPARED_VARIANT)
    return variants


def sqlite_variants() -> list[DrainVariant]:
    """The django-planton variants only: the baselines are psycopg loops, Node's uses pg."""
    return [v for v in DRAIN_VARIANTS if v.is_django_planton]


#: The executors' drain: every receiver takes WORK_MS (a mail server's answer),
#: concurrency EXECUTOR_CONCURRENCY; the ideal is concurrency / latency.
EXECUTOR_CONCURRENCY = 20
WORK_MS = 20
IDEAL_RATE = EXECUTOR_CONCURRENCY / (WORK_MS / 1000)
#: The receiver waits WORK_MS, then completes (the schedule marked the account).
_SLOW = {
    "receiver": "sleep-complete",
    "work_ms": str(WORK_MS),
    "concurrency": EXECUTOR_CONCURRENCY,
}
#: The same, but the receiver also marks its account, in a transaction with the completion.
_SLOW_MARKING = {**_SLOW, "receiver": "sleep"}
EXECUTOR_VARIANTS = (
    DrainVariant("inline", "Inline", "drain", {**_SLOW, "executor": "inline"}),
    DrainVariant("threads", "Threads", "drain", {**_SLOW, "executor": "threads"}),
    DrainVariant(
        "threads-marking",
        "Threads, the receiver also marks its account",
        "drain",
        {**_SLOW_MARKING, "executor": "threads"},
    ),
    DrainVariant(
        "django-tasks", "DjangoTasks, 2 db_workers", "drain", {**_SLOW, "executor": "django-tasks"}
    ),
    # What plain Python threads reach on this machine, for the same work: the
    # ideal is out of any Python loop's reach on a small machine.
    DrainVariant(
        "threaded",
        "hand-written threaded psycopg loop",
        "threaded",
        {"concurrency": EXECUTOR_CONCURRENCY, "work_ms": WORK_MS},
    ),
)
#: The executor variant every executor is also compared with (its key).
EXECUTOR_BASELINE = "threaded"
