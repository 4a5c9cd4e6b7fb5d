"""The checks: pure functions from what was measured to PASS/FAIL verdicts and summary figures.

No I/O here: a scenario's check takes its frozen result
(:mod:`stress.results`), the checks over the whole run take the executions,
accounts, samples and attempts read at the end (:mod:`.whole_run`; those of
the runners' clock in :mod:`.clock`). Each returns
:class:`Findings`; :mod:`stress.report` prints them.
"""

from stress.checks.base import Check, Findings, failure
from stress.checks.clock import cut_short, next_attempts, stored_times
from stress.checks.faults import blocked_schedule, pooler, relay_fault
from stress.checks.scenario import (
    database_restart,
    drain,
    kill,
    override,
    pause,
    repeated_restarts,
    sigterm_at_end,
    sigterm_during_work,
    steady,
)
from stress.checks.whole_run import (
    accounts,
    bad_gaps,
    bad_input,
    concurrency,
    cycles,
    idle_gaps,
    late_starts,
    limit_at,
    no_overlap,
    over_the_run,
    running_at_starts,
    slow_after_restarts,
)

__all__ = [
    "Check",
    "Findings",
    "accounts",
    "bad_gaps",
    "bad_input",
    "blocked_schedule",
    "concurrency",
    "cut_short",
    "cycles",
    "database_restart",
    "drain",
    "failure",
    "idle_gaps",
    "kill",
    "late_starts",
    "limit_at",
    "next_attempts",
    "no_overlap",
    "over_the_run",
    "override",
    "pause",
    "pooler",
    "relay_fault",
    "repeated_restarts",
    "running_at_starts",
    "sigterm_at_end",
    "sigterm_during_work",
    "slow_after_restarts",
    "steady",
    "stored_times",
]
