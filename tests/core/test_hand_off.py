"""Runners that share a task hand its quiet attempts to each other.

Two loops share one "row" here, as two ``run_planton`` processes share a
task's row: the first to come once it is due attempts it (and stores the next
due time); the other finds it not due and waits for that time. Without a
hand-off the loop that made the last attempt comes back exactly when the
other does, and which one wins is decided by a millisecond, the same way
every time; one runner then makes every attempt.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence

from django_planton.core import BATCH_SLACK, CycleReport, Task
from django_planton.core.loop import HAND_OFF_SHARE

from ..support import Log, nothing, wait_until

DELAY = 0.2  # its tenth is the whole slack: 20 ms
LOOKED_LATE = 0.003


class SharedRow:
    """One task's attempt state, shared by the runners of several loops."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_attempt_at = 0.0
        self.attempts = Log()


class RowRunner:
    """A BatchCycleRunner of one loop on a :class:`SharedRow`."""

    def __init__(self, name: str, row: SharedRow) -> None:
        self.name = name
        self.row = row

    def first(self, task: Task) -> CycleReport:
        return CycleReport(delay=0.0)

    def run(self, task: Task, may_schedule: Callable[[], bool]) -> CycleReport:
        [report] = self.run_batch([task], may_schedule)
        return report

    def run_batch(
        self, tasks: Sequence[Task], may_schedule: Callable[[], bool]
    ) -> list[CycleReport]:
        with self.row.lock:
            now = time.monotonic()
            wait = self.row.next_attempt_at - now
            if wait <= 0:
                self.row.next_attempt_at = now + DELAY
                self.row.attempts.append(self.name)
        if wait > 0:
            # A runner that read the row before its next due time learns that
            # time a few milliseconds before its cycle ends (it still commits):
            # without the hand-off, the runner that attempted always comes
            # back first.
            time.sleep(LOOKED_LATE)
            return [CycleReport(delay=wait, waiting="not due") for _ in tasks]
        return [CycleReport(delay=DELAY) for _ in tasks]


def test_the_next_attempt_of_a_quiet_task_goes_to_the_other_runner(make_planton):
    row = SharedRow()
    for name in ("first", "second"):
        make_planton([Task("shared", nothing)], cycle_runner=RowRunner(name, row))
    assert wait_until(lambda: len(row.attempts) >= 13, timeout=10)
    attempts = row.attempts.items[1:13]  # the first is a race
    handed_off = sum(1 for before, after in itertools.pairwise(attempts) if before != after)
    # Every attempt but the first handed to the other runner, give or take a
    # late wake-up of a loaded machine.
    assert handed_off >= 8, attempts
    assert set(attempts) == {"first", "second"}


def test_the_runner_that_attempted_waits_the_whole_slack_the_others_part_of_it(make_planton):
    planton = make_planton([Task("quiet", nothing)], cycle_runner=RowRunner("only", SharedRow()))
    slack = min(BATCH_SLACK, DELAY / 10)
    waited = {planton._slack("quiet", DELAY, attempted=True) for _ in range(50)}
    assert waited == {slack}
    handed = [planton._slack("quiet", DELAY, attempted=False) for _ in range(200)]
    assert all(0.0 <= value <= slack * HAND_OFF_SHARE for value in handed)
    assert len(set(handed)) > 100  # at random: ties between runners are broken differently
