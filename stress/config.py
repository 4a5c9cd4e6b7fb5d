"""What the stress run is made of: its paths, the tasks it watches, its limits and profiles.

Not Django settings: those of the runner processes are ``stress/settings.py``.
The limits live here, in one place, because the scenarios that provoke a
fault and the checks that judge it must agree on them.
"""

from __future__ import annotations

import os
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
ALL_TASKS = (EMAIL_TASK, IDLE_TASK, SLOW_TASK, BAD_TASK)
IDLE_DELAY = 1.0  # idle_probe's and bad_input_probe's constant delay
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


FULL = Profile("full", 5000, 2000, 30.0, 6.0, 10.0, 240.0, 3)
QUICK = Profile("quick", 1500, 800, 12.0, 4.0, 6.0, 90.0, 0)
