"""Cycles that run too long: a warning once while they run, and one when they end.

A schedule stuck on a slow query or a lock wait, or a database that stops
answering, leaves a cycle in flight and nothing else to see: the task is not
attempted, and no error is raised until the cycle returns (if it ever does).
The watchdog's thread looks at the cycles in flight every second or so, and
logs one warning per cycle that has run longer than its threshold, naming
its tasks and for how long; then a second one when that cycle ends.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["CycleWatchdog", "InFlight"]

logger = logging.getLogger("django_planton")


@dataclass(slots=True)
class InFlight:
    """One cycle in flight: its tasks, when it started, whether it was reported slow."""

    names: tuple[str, ...]
    started: float  # time.monotonic()
    warned: bool = False

    def seconds(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started


class CycleWatchdog:
    """Tracks the cycles in flight; warns about those running longer than ``threshold`` seconds.

    ``threshold=None`` turns the warnings off; the cycles are still tracked,
    so that a shutdown can say which ones it gave up on.
    """

    def __init__(self, threshold: float | None, *, check_every: float | None = None) -> None:
        if threshold is not None and not threshold > 0:
            raise ValueError(f"threshold must be a positive number of seconds, not {threshold!r}")
        self.threshold = threshold
        self.check_every = check_every or min(1.0, (threshold or 1.0) / 2)
        self._lock = threading.Lock()
        self._cycles: dict[int, InFlight] = {}
        self._keys = itertools.count()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self, names: Sequence[str]) -> Iterator[None]:
        """Track one cycle of ``names`` while the block runs."""
        key = next(self._keys)
        cycle = InFlight(tuple(names), time.monotonic())
        with self._lock:
            self._cycles[key] = cycle
        try:
            yield
        finally:
            with self._lock:
                del self._cycles[key]
            if cycle.warned:
                logger.warning(
                    "Cycle of %s ended after %.1fs.",
                    _tasks(cycle.names),
                    cycle.seconds(),
                    extra={"task_names": cycle.names},
                )

    def in_flight(self) -> list[InFlight]:
        """The cycles running now, the oldest first."""
        with self._lock:
            return sorted(self._cycles.values(), key=lambda cycle: cycle.started)

    def start(self) -> None:
        """Start the thread that warns (nothing to do without a threshold)."""
        if self.threshold is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="planton-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def check(self) -> list[InFlight]:
        """Warn about each cycle past the threshold not yet warned about; returns them."""
        if self.threshold is None:
            return []
        now = time.monotonic()
        with self._lock:
            late = [
                cycle
                for cycle in self._cycles.values()
                if not cycle.warned and cycle.seconds(now) > self.threshold
            ]
            for cycle in late:
                cycle.warned = True
        for cycle in late:
            logger.warning(
                "Cycle of %s has run for %.1fs (more than PLANTON_SLOW_CYCLE_WARNING, %gs): "
                "a slow schedule, a lock wait or a database that does not answer. "
                "Other tasks go on in other workers.",
                _tasks(cycle.names),
                cycle.seconds(now),
                self.threshold,
                extra={"task_names": cycle.names},
            )
        return late

    def _run(self) -> None:
        while not self._stopping.wait(self.check_every):
            try:
                self.check()
            except Exception:  # the watchdog must outlive a logging failure
                logger.exception("The cycle watchdog failed; it goes on.")


def _tasks(names: Sequence[str]) -> str:
    shown = ", ".join(names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"task{'s' if len(names) > 1 else ''} {shown}{more}"
