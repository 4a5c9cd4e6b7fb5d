"""Measures shared by the tests, the stress run and the benchmarks; plain Python."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["most_at_once"]


def most_at_once(spans: Iterable[tuple[Any, Any]]) -> int:
    """The most ``(started, ended)`` spans open at one instant.

    A span is open from its start up to (not including) its end, so at one
    instant an end sorts before a start: an execution that ends as the next
    one starts never counts twice. Raises ``ValueError`` on an open span
    (``ended`` None) or one that ends before it starts.
    """
    events: list[tuple[Any, int]] = []
    for started, ended in spans:
        if ended is None or ended < started:
            raise ValueError(f"not a closed span: ({started!r}, {ended!r})")
        events += [(started, 1), (ended, -1)]
    running = most = 0
    for _, step in sorted(events):
        running += step
        most = max(most, running)
    return most
