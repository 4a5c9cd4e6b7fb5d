"""How a measured child hands its result to the orchestrator: one JSON line on stdout.

Both sides import this module, so the prefix and the encoding are written
once. Plain Python: the orchestrator never imports Django.
"""

from __future__ import annotations

import json
import sys
from typing import Any

#: A child's result: the figures of its run and a list of ``problems``.
Result = dict[str, Any]

RESULT_PREFIX = "BENCHMARK-RESULT "


def encode(result: Result) -> str:
    """The line a child prints; timestamps and the like become strings."""
    return RESULT_PREFIX + json.dumps(result, default=str)


def decode(stdout: str) -> Result | None:
    """The last result line in a child's stdout, or None when it printed none.

    Anything else on stdout (a stray print in a receiver) is ignored, so only
    the prefixed line is trusted.
    """
    result = None
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    return result


def emit(result: Result) -> None:
    """Print the result line at once, so a child killed later still has handed it over."""
    sys.stdout.write(encode(result) + "\n")
    sys.stdout.flush()
