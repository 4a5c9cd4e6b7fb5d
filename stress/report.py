"""What the run prints: progress lines, each verdict as it comes, and the closing summary."""

from __future__ import annotations

import time
from collections.abc import Iterable

from stress.checks import Check, Findings

RULE = "-" * 78


class Report:
    """Collects the verdicts and summary figures in the order they come, and prints them."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.checks: list[Check] = []
        self.summary: dict[str, str] = {}

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        """A progress line, stamped with the seconds since the start."""
        print(f"[{self.elapsed:6.1f}s] {message}", flush=True)

    def show(self, findings: Findings) -> None:
        """Print each verdict, its examples above it; keep the figures for the summary."""
        self.summary.update(findings.summary)
        for check in findings.checks:
            for line in check.examples:
                print(line)
            self.checks.append(check)
            print(f"{'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}", flush=True)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def print_summary(self, profile: str, seeded: int, shutdowns: Iterable[float]) -> None:
        slowest = max(shutdowns, default=None)
        if slowest is not None:
            self.summary["shutdown after SIGTERM (max)"] = f"{slowest:.2f}s"
        self.summary["accounts seeded"] = str(seeded)
        self.summary["duration"] = f"{self.elapsed:.0f}s ({profile})"
        width = max((len(key) for key in self.summary), default=10)
        print()
        print("Summary")
        print(RULE)
        for key, value in self.summary.items():
            print(f"  {key:<{width}}  {value}")
        print(RULE)
        for check in self.checks:
            print(f"  {'PASS' if check.ok else 'FAIL'}  {check.name}")
        failed = [check for check in self.checks if not check.ok]
        print(RULE)
        print(f"  {'FAILED: ' + str(len(failed)) + ' check(s)' if failed else 'ALL PASSED'}")
