"""Ready-made ``calculate_delay`` functions.

Each builder returns a function of ``attempt_number``, the number of attempts
since the last one that produced instructions. Attempt 0 means "the last
attempt found work (or there was none yet)": there may be more, so the
delay is ``after_work`` (0 by default: try again at once). Every empty
attempt after that backs off further, up to ``maximum``.

``jitter`` spreads delays by up to that fraction either way (0.1 is +/-10%)
so that many tasks started together do not stay in lock-step; a jittered
delay still never exceeds ``maximum``.

:func:`cron` waits for a calendar instead: until the next match of a cron
expression in a time zone, read from the clock that :func:`using_clock` sets.

>>> delay = exponential(base=1, factor=2, maximum=60)
>>> [delay(n) for n in range(9)]
[0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = ["constant", "cron", "exponential", "linear", "using_clock"]

DelayFunction = Callable[[int], float]

#: The clock :func:`cron` reads, when a runner has set one with
#: :func:`using_clock`; ``None`` means this host's clock. A context variable,
#: not a global, so that one runner's clock never leaks into another thread's.
_wall_clock: ContextVar[Callable[[], datetime] | None] = ContextVar(
    "django_planton.backoff.wall_clock", default=None
)


def _check(name: str, value: float, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}.")
    return float(value)


def _check_jitter(jitter: float) -> float:
    jitter = _check("jitter", jitter)
    if jitter > 1:
        raise ValueError(f"jitter is a fraction between 0 and 1, got {jitter!r}.")
    return jitter


def _jittered(delay: float, jitter: float, maximum: float, rng: Callable[[], float]) -> float:
    if jitter:
        delay *= 1 + jitter * (2 * rng() - 1)
    return min(max(delay, 0.0), maximum)


def constant(
    seconds: float, *, jitter: float = 0.0, rng: Callable[[], float] = random.random
) -> DelayFunction:
    """The same delay after every attempt, work found or not.

    >>> constant(5)(0), constant(5)(3)
    (5.0, 5.0)
    """
    seconds = _check("seconds", seconds)
    jitter = _check_jitter(jitter)

    def calculate_delay(attempt_number: int) -> float:
        return _jittered(seconds, jitter, seconds * (1 + jitter), rng)

    return calculate_delay


def linear(
    *,
    step: float,
    maximum: float,
    initial: float | None = None,
    after_work: float = 0.0,
    jitter: float = 0.0,
    rng: Callable[[], float] = random.random,
) -> DelayFunction:
    """``initial`` after the first empty attempt, ``step`` more after each one, up to ``maximum``.

    ``initial`` defaults to ``step``.

    >>> delay = linear(step=10, maximum=25)
    >>> [delay(n) for n in range(5)]
    [0.0, 10.0, 20.0, 25.0, 25.0]
    """
    step = _check("step", step)
    maximum = _check("maximum", maximum)
    initial = step if initial is None else _check("initial", initial)
    after_work = _check("after_work", after_work)
    jitter = _check_jitter(jitter)

    def calculate_delay(attempt_number: int) -> float:
        if attempt_number <= 0:
            return _jittered(after_work, jitter, max(after_work, maximum), rng)
        steps = min(attempt_number, 10**12) - 1
        return _jittered(min(initial + step * steps, maximum), jitter, maximum, rng)

    return calculate_delay


def exponential(
    *,
    base: float = 1.0,
    factor: float = 2.0,
    maximum: float = 300.0,
    after_work: float = 0.0,
    jitter: float = 0.0,
    rng: Callable[[], float] = random.random,
) -> DelayFunction:
    """``base`` after the first empty attempt, times ``factor`` after each one, up to ``maximum``.

    >>> delay = exponential(base=0.5, factor=3, maximum=10, after_work=0.1)
    >>> [delay(n) for n in range(6)]
    [0.1, 0.5, 1.5, 4.5, 10.0, 10.0]
    """
    base = _check("base", base)
    factor = _check("factor", factor, minimum=1.0)
    maximum = _check("maximum", maximum)
    after_work = _check("after_work", after_work)
    jitter = _check_jitter(jitter)

    def calculate_delay(attempt_number: int) -> float:
        if attempt_number <= 0:
            return _jittered(after_work, jitter, max(after_work, maximum), rng)
        # Past a few thousand attempts every sane curve sits at its cap.
        exponent = min(attempt_number, 1_000_000) - 1
        # Compare in log space: factor ** exponent overflows long before a
        # task has been empty for a few thousand attempts.
        if base == 0:
            delay = 0.0
        elif factor > 1 and exponent * math.log(factor) >= math.log(max(maximum, 1e-300) / base):
            delay = maximum
        else:
            delay = min(base * factor**exponent, maximum)
        return _jittered(delay, jitter, maximum, rng)

    return calculate_delay


@contextmanager
def using_clock(now: Callable[[], datetime]) -> Iterator[None]:
    """Make :func:`cron` delays in this block count from ``now()``, an aware datetime.

    A runner that stores next attempts in the database's time sets the
    database's clock here, so a host whose clock drifts still waits until the
    match by the database's reckoning. The clock is set for the current
    context only (this thread, this asyncio task); other threads keep theirs.
    """
    token = _wall_clock.set(now)
    try:
        yield
    finally:
        _wall_clock.reset(token)


def _now() -> datetime:
    clock = _wall_clock.get()
    now = datetime.now(UTC) if clock is None else clock()
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise ValueError(
            f"The clock set by using_clock() must return an aware datetime, got {now!r}."
        )
    return now.astimezone(UTC)


# A time repeated when the clocks go back can give matches that are already
# past (see _next_match); even every minute of a repeated hour is 60 of them.
_MAX_PAST_MATCHES = 10_000


def _next_match(expression: str, zone: ZoneInfo, now: datetime) -> datetime:
    """The first match of ``expression`` in ``zone`` strictly after ``now`` (aware, UTC)."""
    matches = CronSim(expression, now.astimezone(zone))
    for _ in range(_MAX_PAST_MATCHES):
        try:
            match = next(matches)
        except StopIteration:
            # cronsim gives up after 50 years without a match.
            raise ValueError(
                f"The cron expression {expression!r} has no match in the 50 years after "
                f"{now.astimezone(zone).isoformat()} ({zone.key})."
            ) from None
        # In UTC: aware datetimes that share a tzinfo compare (and subtract)
        # by wall time, which is wrong across a change of offset.
        match = match.astimezone(UTC)
        # cronsim starts one second after ``now`` less its microseconds, so a
        # match is after ``now`` except a wall time repeated at fall-back,
        # whose first occurrence (already past) cronsim returns.
        if match > now:
            return match
    raise ValueError(f"The cron expression {expression!r} gave no match after {now.isoformat()}.")


def cron(expression: str, *, tz: str = "UTC", after_work: float = 0.0) -> DelayFunction:
    """Wait for the next match of a cron ``expression`` on the clocks of time zone ``tz``.

    ``expression`` is cron's five fields (minute, hour, day of month, month,
    day of week), as Debian's cron reads them, plus cronsim's extensions: an
    optional leading seconds field, ``L``, ``LW``, ``5L`` and ``MON#1``.
    ``tz`` is an IANA name such as ``"Europe/Berlin"``.

    After an attempt that found work (attempt 0) the delay is ``after_work``:
    the default 0 keeps draining the work found at a match before waiting for
    the next one. After an empty or failed attempt it is the time until the
    next match strictly after now, so a delay asked for at a match moment is
    the time to the match after it, never 0.

    The match is looked for from now, not from the last attempt: a match
    missed while no runner ran is made up once (the task is simply overdue, so
    it is attempted once and then waits for the next match), not once per
    missed match. Like every task, a newly registered one is attempted once
    when a runner starts, whatever the expression; the matches follow.

    Daylight saving time follows Debian's cron, as cronsim does. An
    expression with a fixed minute and hour (``30 2 * * *``) runs by the wall
    clock: a time that the spring change skips runs at the first minute after
    the gap (03:00 in Berlin, where 02:00 becomes 03:00), and a time that the
    autumn change repeats runs once, at its first occurrence (summer time).
    An expression whose minute or hour field starts with ``*`` (``0 * * * *``,
    ``*/5 * * * *``), or that has a seconds field, runs by real time: an
    hourly job runs every 3600 s, so a skipped hour has no match and a
    repeated hour has two.

    A bad expression, an unknown time zone, or an expression that never
    matches (``0 0 30 2 *``) raises :class:`ValueError` here rather than when
    the task waits.
    """
    if not isinstance(expression, str):
        raise ValueError(f"The cron expression must be a string, got {expression!r}.")
    if not isinstance(tz, str):
        raise ValueError(f"tz must be an IANA time zone name, got {tz!r}.")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        raise ValueError(
            f"Unknown time zone {tz!r}: expected an IANA name such as 'Europe/Berlin'."
        ) from error
    after_work = _check("after_work", after_work)
    try:
        # Also finds an expression that never matches, while the mistake is
        # still in the code that registers the task.
        _next_match(expression, zone, _now())
    except CronSimError as error:
        raise ValueError(f"Bad cron expression {expression!r}: {error}.") from error

    def calculate_delay(attempt_number: int) -> float:
        if attempt_number <= 0:
            return after_work
        now = _now()
        return (_next_match(expression, zone, now) - now).total_seconds()

    return calculate_delay
