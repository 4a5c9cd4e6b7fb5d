"""What runs around each attempt of the loop, through the runner's ``around_attempt`` hook.

``Runner(tasks, around_attempt=hook)`` calls ``hook(task_names)`` for every
attempt (one task, or a batch) and enters the context manager it returns
in the worker thread that runs the attempt: the cycle and its receivers.
The benchmarks use it to profile those threads and to note when the cycles
of a task begin, without reaching into the runner's internals.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from django.utils import timezone


class ThreadProfiles:
    """cProfile for the runner's worker threads (``PLANTON_BENCH_PROFILE=<file>``).

    cProfile sees one thread; this wraps each attempt in the worker thread's
    own profile (timed by the thread's CPU clock) and merges them when the
    run ends. Used to find where the time goes, never while figures are
    being taken for the table.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    @contextmanager
    def around_attempt(self, task_names: Sequence[str]) -> Iterator[None]:
        """The hook: profile this attempt in this thread's own profile."""
        profile = getattr(self._local, "profile", None)
        if profile is None:
            # CPU time of this thread, not wall time: waiting on the database is not cost here.
            profile = self._local.profile = cProfile.Profile(time.thread_time)
            with self._lock:
                self._profiles.append(profile)
        profile.enable()
        try:
            yield
        finally:
            profile.disable()

    def dump(self) -> None:
        """Merge the threads' profiles into ``path`` (read it with ``python -m pstats``)."""
        with self._lock:
            profiles = list(self._profiles)
        if not profiles:
            return
        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            stats.add(profile)
        stats.dump_stats(self.path)


def maybe_profile() -> ThreadProfiles | None:
    """Profiles when ``PLANTON_BENCH_PROFILE`` names a file, else None (the default)."""
    path = os.environ.get("PLANTON_BENCH_PROFILE")
    return ThreadProfiles(path) if path else None


class CycleStarts:
    """When each attempt that includes ``task_name`` begins, on the clock of the table.

    ``timezone.now()`` is what the executions' ``started_at`` and
    ``ended_at`` use, so the times compare with theirs.
    """

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name
        self.starts: list[datetime] = []

    @contextmanager
    def around_attempt(self, task_names: Sequence[str]) -> Iterator[None]:
        """The hook: note the time, then let the attempt run."""
        if self.task_name in task_names:
            self.starts.append(timezone.now())
        yield
