"""What each scenario found, as frozen values: the scenarios measure, the checks judge.

A scenario returns one of these and hands nothing else on; the checks over
the whole run get what they need from earlier scenarios (the limit timeline,
the killed runner's work, the restarts) through :class:`Evidence`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from stress.config import EMAIL_TASK
from stress.records import (
    Account,
    Ahead,
    Attempt,
    CutShort,
    EndedExecution,
    Execution,
    Exit,
    LogVolume,
    Sample,
    Stranded,
)

#: From this moment on, this concurrency limit is in force.
LimitChange = tuple[datetime, int]
#: When the runners lost the database, and when they had it back (database's clock).
Window = tuple[datetime, datetime]
#: Per runner label, how many of its log lines said something.
PerRunner = tuple[tuple[str, int], ...]
#: Per task, the seconds its row was seen locked by a transaction, sorted by task.
Held = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class SteadyResult:
    start: datetime
    end: datetime
    sent: int  # e-mails sent during the stretch
    idle_attempts: int
    bad_attempts: int  # bad_input_probe's failed attempts
    slow_attempts: int  # since the start of the run
    limit: int  # send_user_email's effective limit at the start: the declared one

    @property
    def length(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class PauseResult:
    paused: datetime
    watched: datetime  # end of the watch, just before unpausing
    watch: float  # seconds watched
    owed: int  # accounts owed at the end of the watch
    email_starts: tuple[datetime, ...]  # send_user_email starts in (paused, watched]
    last_start: datetime  # the last send_user_email start up to ``watched``
    idle_attempts: tuple[datetime, ...]  # every idle_probe attempt up to ``watched``
    resumed_after: float  # seconds from unpausing to the next send_user_email start


@dataclass(frozen=True)
class OverrideResult:
    changes: tuple[LimitChange, ...]  # the limit timeline: lowered, then back
    lowered_at: tuple[datetime, ...]  # when a lower limit began to bind
    within_grace: tuple[int, ...]  # sampled running counts in the grace period
    after_grace: tuple[int, ...]  # sampled running counts after it, under the override
    starts: int  # send_user_email executions started under the override


@dataclass(frozen=True)
class KillResult:
    label: str  # the killed process
    exit_code: int | None
    killed: datetime
    instructions: tuple[str, ...]  # of the executions it left running
    ended: tuple[EndedExecution, ...]  # those executions, once ended
    signalled: int  # execution_terminated received for them
    logged: int  # the example site's receiver logged them
    events: tuple[tuple[object, ...], ...]  # terminated events around the kill


@dataclass(frozen=True)
class Outage:
    """One stop and start of PostgreSQL."""

    stopping: datetime  # the fast stop began
    down: datetime
    up: datetime  # accepting connections again
    alive_while_down: int  # runners alive while it was down


@dataclass(frozen=True)
class RestartResult:
    outage: Outage
    alive_after: int
    errors: tuple[tuple[str, int], ...]  # ERROR lines logged per runner since before the stop
    first_start: datetime  # first new send_user_email execution
    first_idle: datetime  # first idle_probe attempt after the restart
    stranded: tuple[Stranded, ...]  # executions terminated since the stop began
    listening: int  # runners that LISTEN again
    relisten: float  # seconds from ``up`` until they did (or gave up waiting)


@dataclass(frozen=True)
class RepeatedRestartsResult:
    delays: tuple[float, ...]  # per restart, seconds until all four LISTEN (inf: never)
    alive: tuple[int, ...]  # runners alive while down, per restart, then at the end
    outages: tuple[Outage, ...] = ()


@dataclass(frozen=True)
class BlockedResult:
    """A schedule blocked in the database for a window, while the others went on."""

    start: datetime  # the window, on the database's clock
    end: datetime
    #: Within the window, the attempts of the other quiet 1 s tasks: idle_probe's, and
    #: bad_input_probe's (failed) ones.
    attempts: tuple[tuple[str, tuple[datetime, ...]], ...]
    blocked_for: float  # seconds a pg_sleep of blocking_probe was seen running
    #: How long the sleeping statement's transaction was seen holding each task's row (None:
    #: unknown, no pgrowlocks). Alone, only blocking_probe's; in a batch, the batch's rows.
    held: Held | None
    slow_warnings: PerRunner  # slow-cycle warnings naming blocking_probe, per runner
    threshold: float  # the runners' PLANTON_SLOW_CYCLE_WARNING
    sent: int  # e-mails sent during the window

    @property
    def window(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class FaultResult:
    """The database refused connections, or stopped answering, for a window; then came back."""

    mode: str  # the relay's mode during the window: "refuse" or "blackhole"
    began: datetime
    recovered: datetime  # the relay forwards again
    alive_during: int  # runners alive all through the window
    alive_after: int
    logs: tuple[LogVolume, ...]  # what each runner logged during the window
    #: The same in the window's second half: past the outage's first burst (each execution in
    #: flight says once that it failed), what the runners keep logging while it lasts.
    settled: tuple[LogVolume, ...]
    errors: PerRunner  # ERROR lines logged during the window
    slow_warnings: PerRunner  # slow-cycle warnings logged during the window
    running: tuple[int, ...]  # executions running when the window began
    ended: tuple[tuple[int, datetime | None], ...]  # those, and when they ended
    first_start: datetime | None  # first send_user_email execution after recovery
    first_idle: datetime | None  # first idle_probe attempt after recovery

    @property
    def window(self) -> float:
        return (self.recovered - self.began).total_seconds()


@dataclass(frozen=True)
class PoolerStretch:
    """Four runners behind PgBouncer, their listener on the pooler or on a direct alias."""

    listen: str  # "pgbouncer" or "direct"
    labels: tuple[str, ...]
    start: datetime
    end: datetime
    deaf: PerRunner  # the listener's warning that wake-ups do not reach it, per runner
    listeners: int  # LISTEN connections PostgreSQL saw at the end of the stretch
    starts: int  # send_user_email executions started during the stretch
    most_running: int  # the highest sampled running count during the stretch
    limit: int
    exits: tuple[Exit, ...]  # the runners' SIGTERM at the end of the stretch


@dataclass(frozen=True)
class PoolerResult:
    stretches: tuple[PoolerStretch, ...]
    pooled_log: str  # the tail of PgBouncer's log, shown when a check fails


@dataclass(frozen=True)
class ShutdownResult:
    exits: tuple[Exit, ...]
    left: int | None  # their executions still running once they exited (None: not counted)
    restarted_at: datetime | None  # when new runners were started, if they were


@dataclass(frozen=True)
class DrainResult:
    seeded: int
    took: float


@dataclass(frozen=True)
class Evidence:
    """Everything the checks over the whole run judge, read once at the end."""

    executions: tuple[Execution, ...]
    accounts: tuple[Account, ...]
    mails: tuple[tuple[str, int], ...]  # e-mails per address, from the sent-mail records
    idle_attempts: tuple[Attempt, ...]
    bad_attempts: tuple[Attempt, ...]  # bad_input_probe's failed attempts
    failure_details: tuple[str, ...]  # every schedule_failed's error text
    slow_attempts: tuple[datetime, ...]
    samples: tuple[Sample, ...]
    sampler_failures: int
    limits: tuple[LimitChange, ...]  # the limit timeline, oldest first
    lowered_at: tuple[datetime, ...]
    killed_label: str
    killed_instructions: tuple[str, ...]
    restarts: tuple[datetime, ...]  # when all four runners were started again
    task_row_updates: int
    ahead: tuple[Ahead, ...]  # sampled: each task's next_attempt_at minus the database's now
    cut_short: tuple[CutShort, ...]  # executions terminated while their receiver worked
    late_starts: tuple[CutShort, ...]  # receivers handed an execution that had already ended
    began: datetime  # the database's time before the first runner started
    ended: datetime  # the database's time once every runner had stopped
    #: When the runners had no database: the restarts, the refusing and the silent one.
    outages: tuple[Window, ...] = ()
    #: When the database held the runners' statements without answering (the silent one).
    stalls: tuple[Window, ...] = ()

    @property
    def email(self) -> tuple[Execution, ...]:
        return tuple(execution for execution in self.executions if execution.task == EMAIL_TASK)
