"""What the run reads back, as plain frozen values the checks can judge without I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: One call of a probe's schedule (or one failed cycle): when, and by which process.
Attempt = tuple[datetime, str]
#: One account: id, e-mail address, whether ``email_sent_at`` is set.
Account = tuple[int, str, bool]
#: One process's way out after a signal: its label, seconds until exit, exit code
#: (None when it had to be killed).
Exit = tuple[str, float, int | None]


def now() -> datetime:
    return datetime.now(UTC)


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


@dataclass(frozen=True, slots=True)
class Sample:
    """``send_user_email``'s running executions and effective limit, read in one query."""

    at: datetime
    running: int
    limit: int


@dataclass(frozen=True, slots=True)
class Execution:
    id: int
    task: str
    instruction: str
    started_at: datetime
    ended_at: datetime | None
    hostname: str
    failed: bool
    terminated_at: datetime | None
    terminated_reason: str | None

    @property
    def succeeded(self) -> bool:
        return self.ended_at is not None and not self.failed and self.terminated_at is None

    @property
    def faulted(self) -> bool:
        """Failed or terminated: the cases in which a second e-mail is allowed."""
        return self.failed or self.terminated_at is not None


@dataclass(frozen=True, slots=True)
class EndedExecution:
    """An execution the killed runner left running, once it has ended."""

    id: int
    started_at: datetime
    ended_at: datetime
    terminated_at: datetime | None
    terminated_reason: str | None


@dataclass(frozen=True, slots=True)
class Stranded:
    """An execution terminated after a database restart began."""

    id: int
    hostname: str
    started_at: datetime
    terminated_at: datetime


@dataclass(frozen=True, slots=True)
class Ahead:
    """How far a task's ``next_attempt_at`` was ahead of the database's now, at one sample."""

    at: datetime
    task: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CutShort:
    """A receiver that, done with its work, found its execution terminated meanwhile.

    Also a receiver that found its execution already ended when it started.
    """

    at: datetime
    runner: str  # the process whose receiver it was
    execution: str  # the execution's id


#: How :class:`LogVolume` names the source of a known issue's records.
KNOWN_SOURCE = "known issue "


@dataclass(frozen=True, slots=True)
class LogVolume:
    """What one runner logged during a stretch of ``seconds``: records, and lines by source.

    A source is ``logger [thread]``, or ``known issue <name>`` for the records of a known
    library issue (:data:`~stress.config.KNOWN_NOISY_RECORDS`).
    """

    runner: str
    seconds: float
    records: int  # log records (a traceback's lines belong to one record)
    #: Lines per ``logger [thread]``, the most first; not those of ``first_tracebacks``.
    by_source: tuple[tuple[str, int], ...]
    #: The lines of each distinct error's first traceback (the library logs it once).
    first_tracebacks: int = 0

    @property
    def lines(self) -> int:
        """Every line, first tracebacks included."""
        return sum(count for _, count in self.by_source) + self.first_tracebacks

    def lines_of(self, loggers: tuple[str, ...]) -> int:
        """The lines of the ``loggers`` named (their children too), but first tracebacks and
        those of a known issue."""
        children = tuple(f"{logger}." for logger in loggers)
        return sum(
            count
            for name, count in self.by_source
            if (logger := name.split(" ", 1)[0]) in loggers or logger.startswith(children)
        )

    def known(self) -> tuple[tuple[str, int], ...]:
        """The lines of each known issue (their source is ``known issue <name>``)."""
        return tuple(
            (name.removeprefix(KNOWN_SOURCE), count)
            for name, count in self.by_source
            if name.startswith(KNOWN_SOURCE)
        )

    def rate(self, lines: int) -> float:
        """``lines`` per second of this stretch."""
        return lines / self.seconds if self.seconds > 0 else float("inf")
