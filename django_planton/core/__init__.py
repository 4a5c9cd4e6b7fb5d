"""The scheduling core: plain Python, no Django.

A :class:`Planton` owns a set of :class:`Task` objects and, for each one,
repeats a *cycle*: wait ``calculate_delay(attempt_number)`` seconds, read the
instructions still active, derive a ``limit`` from the task's concurrency, ask
the task's ``schedule`` function for at most that many new instructions,
validate them, and dispatch them.

- :mod:`.task`: what a task is, and what a schedule receives;
- :mod:`.rules`: the cycle's pure rules (:func:`run_cycle`, delays, limits, instructions);
- :mod:`.retry`: how long a failing instruction is held back (:class:`RetryPolicy`);
- :mod:`.runners`: the :class:`CycleRunner` seam and the in-memory :class:`MemoryCycleRunner`;
- :mod:`.due`: the heap of due times;
- :mod:`.wakeups`: the one owner of wake-up state;
- :mod:`.events`: where the loop's events go (the log, ``on_task``, ``on_error``);
- :mod:`.loop`: :class:`Planton`, the timer thread and its worker pool.

The Django layer plugs a runner that keeps attempt state on a database row
into the same loop, so there is one loop, not two.
"""

from .due import DueQueue
from .events import ErrorLog, EventSink, error_log, log_error
from .loop import BATCH_SIZE, BATCH_SLACK, AttemptHook, Planton
from .retry import DEFAULT_RETRY, DEFAULT_RETRY_DELAY, RetryPolicy
from .rules import (
    DEFAULT_DELAY,
    CycleOutcome,
    DelayBounds,
    NextAttempt,
    compute_delay,
    compute_limit,
    run_cycle,
    validate_instructions,
)
from .runners import BatchCycleRunner, CycleReport, CycleRunner, MemoryCycleRunner
from .task import (
    DelayFunction,
    ErrorEvent,
    LimitFunction,
    ScheduleContext,
    ScheduleFunction,
    Task,
    TaskEvent,
    validate_task,
)
from .wakeups import WakeUps
from .watchdog import CycleWatchdog, InFlight

__all__ = [
    "BATCH_SIZE",
    "BATCH_SLACK",
    "DEFAULT_DELAY",
    "DEFAULT_RETRY",
    "DEFAULT_RETRY_DELAY",
    "AttemptHook",
    "BatchCycleRunner",
    "CycleOutcome",
    "CycleReport",
    "CycleRunner",
    "CycleWatchdog",
    "DelayBounds",
    "DelayFunction",
    "DueQueue",
    "ErrorEvent",
    "ErrorLog",
    "EventSink",
    "InFlight",
    "LimitFunction",
    "MemoryCycleRunner",
    "NextAttempt",
    "Planton",
    "RetryPolicy",
    "ScheduleContext",
    "ScheduleFunction",
    "Task",
    "TaskEvent",
    "WakeUps",
    "compute_delay",
    "compute_limit",
    "error_log",
    "log_error",
    "run_cycle",
    "validate_instructions",
    "validate_task",
]
