"""What a check returns: verdicts, the lines that explain a failure, and figures for the summary."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stress.records import Exit

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
