"""Ready-made ``calculate_delay`` functions.

Each builder returns a function of ``attempt_number``, the number of attempts
since the last one that produced instructions. Attempt 0 means "the last
attempt found work (or there was none yet)": there may be more, so the
delay is ``after_work`` (0 by default: try again at once). Every empty
attempt after that backs off further, up to ``maximum``.

``jitter`` spreads delays by up to that fraction either way (0.1 is +/-10%)
so that many tasks started together do not stay in lock-step; a jittered
delay still never exceeds ``maximum``.

>>> delay = exponential(base=1, factor=2, maximum=60)
>>> [delay(n) for n in range(9)]
[0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

__all__ = ["constant", "exponential", "linear"]

DelayFunction = Callable[[int], float]


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
