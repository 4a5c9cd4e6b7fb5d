"""What a check returns: verdicts, the lines that explain a failure, and figures for the summary."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from stress.config import KILL_MAX_DURATION, OUTAGE_MARGIN
from stress.records import Execution, Exit, seconds
from stress.results import Window

#: Examples shown above a verdict, at the most, so a failure stays readable.
EXAMPLES = 10


@dataclass(frozen=True)
class Check:
    """One PASS/FAIL line: its name, the verdict, the figures behind it."""

    name: str
    ok: bool
    detail: str
    examples: tuple[str, ...] = ()  # printed above the verdict: what went wrong, where


@dataclass(frozen=True)
class Findings:
    """The checks of one scenario (or one part of the final checks) and its summary lines."""

    checks: tuple[Check, ...] = ()
    summary: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def failure(name: str, detail: str) -> Findings:
    """A scenario that raised, or a run that was interrupted."""
    return Findings((Check(name, False, detail),))


def exits_detail(exits: Iterable[Exit]) -> str:
    return "; ".join(f"{label} exit {code} after {elapsed:.2f}s" for label, elapsed, code in exits)


def exits_summary(exits: Iterable[Exit]) -> str:
    return ", ".join(f"{label} {elapsed:.1f}s" for label, elapsed, _ in exits)


def caught_by_outage(execution: Execution, outages: Sequence[Window]) -> bool:
    """Whether ``execution`` was terminated by its maximum duration across a database outage.

    It started before an outage ended and was terminated after it began, no
    earlier than the maximum duration (3 s from the kill scenario on) after
    its start. Its receiver could not end it while the runners had no
    database, nor could the receivers queued behind that one in the same
    worker thread; that is how the maximum duration is meant to work.
    """
    if execution.terminated_at is None:
        return False
    if seconds(execution.terminated_at - execution.started_at) < KILL_MAX_DURATION:
        return False
    margin = timedelta(seconds=OUTAGE_MARGIN)
    return any(
        execution.started_at <= end + margin and execution.terminated_at >= start
        for start, end in outages
    )
