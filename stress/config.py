"""What the stress run is made of: its paths, the tasks it watches, its limits and profiles.

Not Django settings: those of the runner processes are ``stress/settings.py``.
The limits live here, in one place, because the scenarios that provoke a
fault and the checks that judge it must agree on them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "manage.py"
# The stress run's own server, apart from the tests' (scripts/postgres.py's default port).
PGPORT = int(os.environ.get("PLANTON_PGPORT", "54349"))
PGROOT = Path(os.environ.get("PLANTON_PGROOT", "/tmp/planton-stress-pg"))
WORK = Path(os.environ.get("STRESS_WORK_DIR", "/tmp/planton-stress"))

RUNNER_NAMES = ("r1", "r2", "r3", "r4")
EMAIL_TASK = "send_user_email"
IDLE_TASK = "idle_probe"
SLOW_TASK = "slow_probe"
BAD_TASK = "bad_input_probe"
BLOCKING_TASK = "blocking_probe"
ALL_TASKS = (EMAIL_TASK, IDLE_TASK, SLOW_TASK, BAD_TASK, BLOCKING_TASK)
IDLE_DELAY = 1.0  # idle_probe's, bad_input_probe's and blocking_probe's constant delay
SLOW_DELAY = 300.0
TERMINATED_REASON = "maximum execution duration exceeded"
KILL_MAX_DURATION = 3  # seconds, set on send_user_email's row from the kill scenario on
SHUTDOWN_LIMIT = 35.0  # seconds a runner may take to exit after SIGTERM
RATE_LIMIT = 1.5  # attempts per second across the runners, for a task with a 1 s delay
OVERRIDE = 2
OVERRIDE_GRACE = 2.0  # seconds for executions above a lowered limit to drain
SAMPLE_EVERY = 0.02
DATABASE_DOWN_FOR = 3.0
LISTEN_WITHIN = 10.0  # seconds after a restart by which every runner LISTENs again
RECOVERY_WITHIN = 60.0  # seconds after a restart by which new work must start

# -- the faults (stress/scenarios/faults.py, pooler.py) --------------------------------------
#: The runners' PLANTON_SLOW_CYCLE_WARNING (stress/settings.py reads it from here): shorter
#: than the faults' windows, so that a blocked cycle is named during the window.
SLOW_CYCLE_WARNING = 3.0
#: The library's PLANTON_MAX_WAIT (its default): the longest back-off from a lost database.
MAX_WAIT = 30.0
#: Where blocking_probe's schedule reads the end of its window (a time of the database).
BLOCK_FLAG = WORK / "block-schedule"
#: Longest gap allowed between two idle_probe attempts while another schedule blocks: the
#: task's delay (1 s), the batch's time budget after which the blocked statement is cut
#: (PLANTON_BATCH_TIME_BUDGET, 1 s by default), and 2 s for the cycles around them (a
#: first CI run saw 3.01 s against a limit of 3 s). Before the budget: the whole block.
STARVED_GAP = 4.0
#: The library's log lines per second a runner may write while an outage lasts (in the
#: window's second half, each distinct error's first traceback aside): its loggers, and
#: Django's signal dispatcher, which logs what the library's receivers raise.
LOG_RATE_LIMIT = 10.0
LIBRARY_LOGGERS = ("django_planton", "django.dispatch")
#: Seconds after recovery by which every execution running at a fault's start must have ended.
ENDED_WITHIN = 10.0
#: Seconds after recovery by which work must resume, beyond the runners' back-off from a lost
#: database (the poll interval doubled per failed attempt, at most MAX_WAIT: after a window
#: of W seconds, the next attempt may come up to about W seconds later).
RESUME_SLACK = 5.0
#: The watchdog's warning about a cycle in flight past PLANTON_SLOW_CYCLE_WARNING.
SLOW_CYCLE_TEXT = "has run for"
#: The listener's warning when its probe NOTIFY never arrives (behind PgBouncer).
DEAF_TEXT = "Wake-ups from other processes do not reach this runner"
#: Seconds the listener waits for its probe NOTIFY before that warning (EndedListener).
PROBE_WAIT = 5.0
#: Seconds watched behind PgBouncer with a direct listener: past the probe's wait.
DIRECT_WATCH = 8.0
#: Seconds after an outage's end an execution may have started and still count as caught by it.
OUTAGE_MARGIN = 1.0

#: The library issues the checks know by name (stress/README.md, "Known issues"), each with
#: what it looks like. All fixed in 1d1416b but the last, which the Threads executor does
#: not show: none is tolerated by default. ``STRESS_KNOWN_ISSUES`` (names, comma-separated)
#: tolerates some, e.g. to bisect; a check that tolerates one says so in its line.
ISSUES: Mapping[str, str] = {
    "housekeeping-tracebacks": "housekeeping logs a full traceback every round of an outage",
    "receiver-failure-tracebacks": (
        "a receiver that raises is logged with its traceback every time, and twice "
        "(the library's line and Django's send_robust())"
    ),
    "clock-ahead-after-stall": (
        "a cycle's clock counts from when its lock statement was sent: a statement held up "
        "on its way stores next attempts late"
    ),
    "lone-schedule-holds-batch": (
        "a batch with one task due runs its schedule outside the batch's time budget while "
        "it holds the batch's other rows"
    ),
    "receivers-after-termination": "task_dispatched is sent for an execution already ended",
}
DEFAULT_KNOWN_ISSUES: frozenset[str] = frozenset()


def known_issues(names: str | None) -> frozenset[str]:
    """The issues named in ``names`` (comma-separated; None: the default ones)."""
    if names is None:
        return DEFAULT_KNOWN_ISSUES
    chosen = frozenset(name.strip() for name in names.split(",") if name.strip())
    if unknown := chosen - set(ISSUES):
        raise ValueError(f"unknown issue(s) {sorted(unknown)}; known: {sorted(ISSUES)}")
    return chosen


KNOWN_ISSUES = known_issues(os.environ.get("STRESS_KNOWN_ISSUES"))
#: The log records of the known issues about logging, as (logger, thread, start of the
#: message; "" for any): the log-rate check shows their lines apart instead of bounding them.
NOISY_RECORDS: Mapping[str, tuple[tuple[str, str, str], ...]] = {
    "housekeeping-tracebacks": (("django_planton", "planton-housekeeping", "Housekeeping failed"),),
    "receiver-failure-tracebacks": (
        ("django_planton", "", "A receiver of "),
        ("django.dispatch", "", "Error calling "),
    ),
}
KNOWN_NOISY_RECORDS = {
    issue: patterns for issue, patterns in NOISY_RECORDS.items() if issue in KNOWN_ISSUES
}

#: Runners whose wall clock is off by these seconds (scripts/clockshift.py): a
#: host whose clock runs ahead, one whose clock runs behind. Every time the
#: runners store or compare must come from the database's clock all the same.
CLOCK_SHIFTS: Mapping[str, float] = {"r3": 600.0, "r4": -600.0}
#: The longest delay each task may ask for, hence store in next_attempt_at
#: (its back-off's maximum; a saturated task waits at least the 1 s poll).
LONGEST_DELAY: Mapping[str, float] = {
    EMAIL_TASK: 30.0,
    IDLE_TASK: IDLE_DELAY,
    SLOW_TASK: SLOW_DELAY,
    BAD_TASK: IDLE_DELAY,
    BLOCKING_TASK: IDLE_DELAY,
    "purge_deleted_accounts": 3600.0,
    "clear_expired_sessions": 3600.0,  # the example site's; idle here (no sessions)
}
AHEAD_SLACK = 2.0  # seconds next_attempt_at may be ahead of the database's now beyond that
AHEAD_EVERY = 0.25  # seconds between two samples of the tasks' next_attempt_at
#: Seconds a stored time may lie outside the run, on the database's clock.
STORED_MARGIN = 1.0


def clock_note(name: str) -> str:
    """`` (clock +600s)`` for a runner (``r3`` or ``r3.g1``) under a skewed clock, else ``""``."""
    shift = CLOCK_SHIFTS.get(name.split(".")[0])
    return f" (clock {shift:+g}s)" if shift else ""


def skewed_runners() -> str:
    """The runners under a skewed clock, for the report: ``r3 +600s, r4 -600s``."""
    return ", ".join(f"{name} {shift:+g}s" for name, shift in CLOCK_SHIFTS.items()) or "none"


@dataclass(frozen=True)
class Profile:
    """How big and how long: the full form, or the quicker one CI runs."""

    name: str
    accounts: int  # seeded before the runners start
    backlog: int  # accounts owed at the start of each scenario (topped up with seed_accounts)
    steady: float  # seconds of undisturbed work, where the cadence is measured
    pause_watch: float  # seconds watched after pausing
    override_watch: float  # seconds watched under the override
    drain_timeout: float
    repeated_restarts: int  # PostgreSQL restarts after the first, for the listeners
    fault_window: float  # seconds a schedule blocks, the database refuses or does not answer
    pooler_window: float  # seconds the runners work behind PgBouncer


FULL = Profile("full", 5000, 2000, 30.0, 6.0, 10.0, 240.0, 3, 20.0, 20.0)
QUICK = Profile("quick", 1500, 800, 12.0, 4.0, 6.0, 90.0, 0, 7.0, 7.0)
