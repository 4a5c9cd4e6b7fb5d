"""How long an instruction whose execution failed is held back, and when it is given up.

A receiver that fails (a mail server that refuses, a row that cannot be
saved) would otherwise see its instruction returned by the next cycle at
once, and fail again thousands of times a minute. A :class:`RetryPolicy`
holds it back instead: ``delay(failures)`` seconds after its last failure,
where ``failures`` counts its failures in a row (1 after the first), and
after ``max_attempts`` failures in a row it is given up until an operator
releases it. Like the rest of the core, the policy works in delays; the
adapter applies them to its clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..backoff import exponential
from ..errors import InvalidTaskConfigurationError

__all__ = ["DEFAULT_RETRY", "DEFAULT_RETRY_DELAY", "RetryPolicy"]

DelayFunction = Callable[[int], float]

#: 10 s after the first failure, doubling after each one, at most an hour.
DEFAULT_RETRY_DELAY: DelayFunction = exponential(base=10.0, factor=2.0, maximum=3600.0)

# A delay function that fails or returns nonsense holds back this long rather
# than not at all: retrying at once is what a policy is there to prevent.
_FALLBACK_DELAY = 60.0


def _default_delay() -> DelayFunction:
    return DEFAULT_RETRY_DELAY


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When an instruction whose last execution failed may be dispatched again.

    ``max_attempts`` is how many executions an instruction gets before it is
    given up (``None``: never given up); ``delay(failures)`` the seconds it is
    held back after ``failures`` failures in a row. The
    :mod:`django_planton.backoff` builders make good delays:
    ``backoff.exponential(base=10, maximum=3600)`` is the default.
    """

    max_attempts: int | None = None
    delay: DelayFunction = field(default_factory=_default_delay)

    def __post_init__(self) -> None:
        if self.max_attempts is not None and (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 1
        ):
            raise InvalidTaskConfigurationError(
                f"RetryPolicy max_attempts must be None or at least 1, got {self.max_attempts!r}."
            )
        if not callable(self.delay):
            raise InvalidTaskConfigurationError(
                f"RetryPolicy delay must be callable, got {self.delay!r}."
            )

    def gives_up(self, failures: int) -> bool:
        """Whether ``failures`` failures in a row exhaust the attempts."""
        return self.max_attempts is not None and failures >= self.max_attempts

    def hold_back(self, failures: int) -> float:
        """Seconds an instruction is held back after ``failures`` failures in a row."""
        try:
            value: Any = self.delay(failures)
            usable = (
                not isinstance(value, bool)
                and isinstance(value, int | float)
                and math.isfinite(value)
                and value >= 0
            )
        except Exception:
            usable = False
        return float(value) if usable else _FALLBACK_DELAY


#: The policy of a task that names none.
DEFAULT_RETRY = RetryPolicy()
