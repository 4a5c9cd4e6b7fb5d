"""RetryPolicy on its own, and how one cycle treats the instructions it holds back."""

from __future__ import annotations

import math

import pytest

import django_planton
from django_planton import InvalidTaskConfigurationError, RetryPolicy, UnexpectedStateError
from django_planton.core import DEFAULT_RETRY, Task, run_cycle
from django_planton.errors import UnexpectedTaskInstructionsError
from django_planton.registry import TaskRegistry

from .helpers import returning, task

# -- validation ---------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [0, -1, True, False, 1.5, "3", 2.0])
def test_max_attempts_must_be_none_or_a_positive_int(max_attempts):
    with pytest.raises(InvalidTaskConfigurationError, match="max_attempts"):
        RetryPolicy(max_attempts=max_attempts)


@pytest.mark.parametrize("delay", [5, 2.5, None, "exponential"])
def test_delay_must_be_callable(delay):
    with pytest.raises(InvalidTaskConfigurationError, match="delay must be callable"):
        RetryPolicy(delay=delay)


def test_valid_policies_are_accepted():
    assert RetryPolicy().max_attempts is None
    assert RetryPolicy(max_attempts=1).max_attempts == 1
    assert RetryPolicy(max_attempts=7, delay=lambda failures: 1.0).hold_back(3) == 1.0


def test_the_policy_is_exported_at_the_top():
    assert django_planton.RetryPolicy is RetryPolicy
    assert "RetryPolicy" in django_planton.__all__


# -- the default delay ----------------------------------------------------------------


def test_the_default_holds_back_ten_seconds_doubling_to_an_hour():
    policy = RetryPolicy()
    assert policy.hold_back(1) == 10.0
    assert policy.hold_back(2) == 20.0
    assert policy.hold_back(3) == 40.0
    assert policy.hold_back(9) == 2560.0
    assert policy.hold_back(10) == 3600.0
    assert policy.hold_back(50) == 3600.0
    assert policy.hold_back(10_000) == 3600.0


def test_the_default_never_gives_up():
    assert not RetryPolicy().gives_up(1)
    assert not RetryPolicy().gives_up(10**9)
    assert not DEFAULT_RETRY.gives_up(10**9)


def test_gives_up_after_max_attempts_failures():
    policy = RetryPolicy(max_attempts=3)
    assert [policy.gives_up(failures) for failures in (1, 2, 3, 4)] == [False, False, True, True]
    assert RetryPolicy(max_attempts=1).gives_up(1)


def test_hold_back_passes_the_failures_in_a_row_to_delay():
    seen = []

    def delay(failures):
        seen.append(failures)
        return 2 * failures

    policy = RetryPolicy(delay=delay)
    assert policy.hold_back(4) == 8.0
    assert isinstance(policy.hold_back(4), float)
    assert seen == [4, 4]


def test_a_delay_of_zero_is_kept():
    # 0 is a valid answer: the instruction may be retried at the next attempt.
    assert RetryPolicy(delay=lambda failures: 0).hold_back(1) == 0.0


def _raises(failures):
    raise ArithmeticError("no delay today")


@pytest.mark.parametrize(
    "delay",
    [
        _raises,
        lambda failures: math.nan,
        lambda failures: math.inf,
        lambda failures: -math.inf,
        lambda failures: -1.0,
        lambda failures: -5,
        lambda failures: True,
        lambda failures: "10",
        lambda failures: None,
        lambda failures: 10**400,  # too large for a float
    ],
    ids=["raises", "nan", "inf", "-inf", "negative", "negative-int", "bool", "str", "none", "huge"],
)
def test_a_broken_delay_falls_back_to_a_positive_delay(delay):
    held = RetryPolicy(delay=delay).hold_back(1)
    assert isinstance(held, float)
    assert math.isfinite(held)
    assert held > 0


# -- the cycle and held-back instructions -------------------------------------------------


def test_the_schedule_receives_the_held_back_instructions():
    schedule = returning([])
    run_cycle(
        task(schedule=schedule, concurrency=3),
        attempt_number=0,
        active_task_instructions=["running"],
        held_back_instructions=["x", "y"],
    )
    [context] = schedule.contexts.items
    assert context.held_back_instructions == ("x", "y")
    assert context.active_task_instructions == ("running",)


def test_without_held_back_instructions_the_context_has_none():
    schedule = returning([])
    run_cycle(task(schedule=schedule), attempt_number=0, active_task_instructions=[])
    [context] = schedule.contexts.items
    assert context.held_back_instructions == ()


def test_returned_held_back_instructions_are_dropped_not_errors():
    outcome = run_cycle(
        task(schedule=returning(["a", "b", "c"]), concurrency=3),
        attempt_number=4,
        active_task_instructions=[],
        held_back_instructions=["b"],
    )
    assert outcome.errors == ()
    assert not outcome.failed
    assert outcome.instructions == ("a", "c")
    assert outcome.held_back == ("b",)
    assert outcome.attempt_number == 0  # work was dispatched


def test_integer_instructions_match_their_held_back_strings():
    outcome = run_cycle(
        task(schedule=returning([7, 8]), concurrency=2),
        attempt_number=0,
        active_task_instructions=[],
        held_back_instructions=["7"],
    )
    assert outcome.instructions == ("8",)
    assert outcome.held_back == ("7",)


def test_an_attempt_that_returned_only_held_back_instructions_counts_as_empty():
    outcome = run_cycle(
        task(schedule=returning(["a", "b"]), concurrency=2),
        attempt_number=2,
        active_task_instructions=[],
        held_back_instructions=["a", "b", "c"],
    )
    assert outcome.errors == ()
    assert outcome.scheduled
    assert outcome.instructions == ()
    assert outcome.held_back == ("a", "b")
    assert outcome.attempt_number == 3


def test_held_back_instructions_not_returned_are_not_reported():
    outcome = run_cycle(
        task(schedule=returning(["a"]), concurrency=2),
        attempt_number=0,
        active_task_instructions=[],
        held_back_instructions=["z"],
    )
    assert outcome.instructions == ("a",)
    assert outcome.held_back == ()


@pytest.mark.parametrize(
    ("returned", "active", "reason"),
    [
        (["a", "a"], [], "more than once"),
        (["a", "b", "c", "d"], [], "exceed the limit"),
        (["busy"], ["busy"], "already active"),
        ([True], [], "neither a str nor an int"),
    ],
    ids=["duplicate", "limit", "active", "type"],
)
def test_held_back_instructions_are_still_validated(returned, active, reason):
    # Validation comes first: a batch broken in another way is rejected whole,
    # held-back instructions included.
    outcome = run_cycle(
        task(schedule=returning(returned), concurrency=3),
        attempt_number=1,
        active_task_instructions=active,
        held_back_instructions=["a", "busy", "True"],
    )
    [error] = outcome.errors
    assert isinstance(error, UnexpectedTaskInstructionsError)
    assert reason in str(error)
    assert outcome.failed
    assert outcome.instructions == ()
    assert outcome.held_back == ()
    assert outcome.attempt_number == 2


def test_held_back_instructions_count_towards_the_limit():
    # A schedule that returns a held-back instruction used one of its slots.
    outcome = run_cycle(
        task(schedule=returning(["held", "a", "b"]), concurrency=2),
        attempt_number=0,
        active_task_instructions=[],
        held_back_instructions=["held"],
    )
    assert isinstance(outcome.errors[0], UnexpectedTaskInstructionsError)
    assert outcome.instructions == ()


def test_a_saturated_task_does_not_call_schedule_whatever_is_held_back():
    schedule = returning(["a"])
    outcome = run_cycle(
        task(schedule=schedule, concurrency=1),
        attempt_number=0,
        active_task_instructions=["running"],
        held_back_instructions=["a"],
    )
    assert outcome.saturated
    assert not outcome.scheduled
    assert len(schedule.contexts) == 0
    assert outcome.held_back == ()


def test_active_instructions_that_are_not_a_sequence_are_still_an_error():
    outcome = run_cycle(
        task(schedule=returning(["a"])),
        attempt_number=0,
        active_task_instructions="abc",
        held_back_instructions=["a"],
    )
    assert isinstance(outcome.errors[0], UnexpectedStateError)


# -- Task(retry=...) and the decorator ---------------------------------------------------


def test_a_task_has_the_default_policy_unless_told():
    assert task().retry is DEFAULT_RETRY


def test_a_task_takes_a_policy_or_none():
    policy = RetryPolicy(max_attempts=2)
    assert task(retry=policy).retry is policy
    assert task(retry=None).retry is None


@pytest.mark.parametrize("retry", [3, "exponential", RetryPolicy, lambda failures: 1.0, True])
def test_a_task_refuses_anything_else_as_retry(retry):
    with pytest.raises(InvalidTaskConfigurationError, match="retry") as raised:
        Task("bad-retry", lambda context: [], retry=retry)
    assert raised.value.task_name == "bad-retry"


def test_the_decorator_passes_the_policy_through():
    registry = TaskRegistry()
    policy = RetryPolicy(max_attempts=4, delay=lambda failures: 1.0)

    @registry.task(name="with-policy", retry=policy)
    def schedule(context):
        return []

    assert schedule.retry is policy
    assert registry.get("with-policy") is schedule


def test_the_decorator_passes_none_through_and_defaults_to_the_default():
    registry = TaskRegistry()

    @registry.task(retry=None)
    def without(context):
        return []

    @registry.task()
    def default(context):
        return []

    assert without.retry is None
    assert default.retry is DEFAULT_RETRY
    assert registry.names() == ["default", "without"]


def test_the_decorator_validates_the_policy():
    registry = TaskRegistry()
    with pytest.raises(InvalidTaskConfigurationError, match="retry"):
        registry.task(name="bad", retry="never")(lambda context: [])
    assert "bad" not in registry
