"""The core's errors: stable codes, one base class, the attributes they carry."""

from __future__ import annotations

import pytest

from django_planton.errors import (
    DuplicateTaskNameError,
    InvalidTaskConfigurationError,
    PlantonError,
    UnexpectedStateError,
    UnexpectedTaskInstructionsError,
)

# -- errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UnexpectedStateError("x"), "UNEXPECTED_STATE_ERROR"),
        (InvalidTaskConfigurationError("x", task_name="t"), "INVALID_TASK_CONFIGURATION"),
        (DuplicateTaskNameError("t"), "DUPLICATE_TASK_NAME"),
        (
            UnexpectedTaskInstructionsError("x", task_name="t", unexpected_task_instructions=[1]),
            "UNEXPECTED_TASK_INSTRUCTIONS",
        ),
    ],
)
def test_errors_have_stable_codes_and_share_a_base(error, code):
    assert error.code == code
    assert type(error).code == code
    assert isinstance(error, PlantonError)
    assert isinstance(error, Exception)


def test_error_attributes():
    assert InvalidTaskConfigurationError("m", task_name="a").task_name == "a"
    assert DuplicateTaskNameError("a").duplicate_task_name == "a"
    batch = ["x", "x"]
    error = UnexpectedTaskInstructionsError("m", task_name="a", unexpected_task_instructions=batch)
    assert error.task_name == "a"
    assert error.unexpected_task_instructions is batch
    assert str(error) == "m"
