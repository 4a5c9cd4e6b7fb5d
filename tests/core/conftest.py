"""Fixtures of the pure core's tests: Plantons without a database, their events, a gate.

* ``make_planton`` builds core loops (events to ``recorder``) and stops them
  at teardown; ``gate`` is opened first, so user code blocked on it ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from django_planton.core import Planton, Task

from ..support import Recorder, no_active

_RECORDER = object()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def gate() -> threading.Event:
    """An event that blocking user code waits on; opened before any Planton stops."""
    return threading.Event()


@pytest.fixture
def make_planton(recorder: Recorder, gate: threading.Event) -> Iterator[Callable[..., Planton]]:
    """Build (and by default start) Plantons; every one is stopped at teardown.

    Events go to ``recorder`` unless ``on_task``/``on_error`` say otherwise;
    other keywords (``cycle_runner``, ``max_workers``, ``batch_size``) go to
    :class:`Planton`.
    """
    created: list[Planton] = []

    def make(
        tasks: Sequence[Task],
        get_active: Callable[[str], Sequence[str]] = no_active,
        *,
        on_task: Any = _RECORDER,
        on_error: Any = _RECORDER,
        start: bool = True,
        **kwargs: Any,
    ) -> Planton:
        planton = Planton(
            tasks=tasks,
            get_active_task_instructions=get_active,
            on_task=recorder.on_task if on_task is _RECORDER else on_task,
            on_error=recorder.on_error if on_error is _RECORDER else on_error,
            **kwargs,
        )
        created.append(planton)
        if start:
            planton.start()
        return planton

    yield make
    gate.set()
    for planton in created:
        planton.stop(timeout=5)
