"""Fixtures of the Django layer's tests: the runner's, shared from ``runner/conftest.py``."""

from __future__ import annotations

from ..runner.conftest import (  # noqa: F401 - fixtures shared with the runner's tests
    make_runner,
    make_task,
    record_signal,
    relayed_database,
    scripted_schedule,
)
