"""The core's pure functions and one cycle without a loop.

``compute_delay``, ``compute_limit``, ``validate_instructions``, ``run_cycle`` and
the :class:`MemoryCycleRunner`.
"""

from __future__ import annotations

import math

import pytest

from django_planton.core import (
    DEFAULT_DELAY,
    MemoryCycleRunner,
    Task,
    compute_delay,
    compute_limit,
    run_cycle,
    validate_instructions,
)
from django_planton.errors import UnexpectedStateError, UnexpectedTaskInstructionsError

from ..support import Log, no_active, nothing
from .helpers import returning

# -- pure functions -------------------------------------------------------------------


def test_compute_delay_passes_the_attempt_number_and_returns_floats():
    args = []

    def delay(attempt_number):
        args.append(attempt_number)
        return attempt_number * 2

    t = Task("t", nothing, calculate_delay=delay)
    assert compute_delay(t, 0) == (0.0, None)
    value, error = compute_delay(t, 3)
    assert (value, error) == (6.0, None)
    assert type(value) is float
    assert args == [0, 3]


@pytest.mark.parametrize("bad", [-1, -1e-9, math.nan, math.inf, -math.inf, "2", None, True])
def test_compute_delay_rejects_nonsense_and_falls_back(bad):
    value, error = compute_delay(Task("t", nothing, calculate_delay=lambda n: bad), 0)
    assert value == DEFAULT_DELAY == 1.0
    assert isinstance(error, UnexpectedStateError)
    assert "t" in str(error)


def test_compute_delay_returns_the_users_exception():
    boom = OSError("x")

    def delay(attempt_number):
        raise boom

    assert compute_delay(Task("t", nothing, calculate_delay=delay), 4) == (1.0, boom)


def test_compute_limit_default_custom_and_invalid():
    t = Task("t", nothing, concurrency=4)
    assert compute_limit(t, 4, []) == 4
    assert compute_limit(t, 4, ["a"]) == 3
    assert compute_limit(t, 6, ["a"]) == 5  # concurrency argument wins
    custom = Task("c", nothing, calculate_limit=lambda c, a: c * 10 + len(a))
    assert compute_limit(custom, 2, ["a"]) == 21
    for bad in (-1, 2.0, True, "3", None):
        with pytest.raises(UnexpectedStateError):
            compute_limit(Task("b", nothing, calculate_limit=lambda c, a, bad=bad: bad), 1, [])
    boom = RuntimeError()

    def failing(concurrency, active):
        raise boom

    with pytest.raises(RuntimeError) as info:
        compute_limit(Task("f", nothing, calculate_limit=failing), 1, [])
    assert info.value is boom


def test_validate_instructions_normalises_to_strings():
    assert validate_instructions("t", [1, "a", 0], limit=3, active=["b"]) == ("1", "a", "0")
    assert validate_instructions("t", ("x",), limit=1, active=[]) == ("x",)
    assert validate_instructions("t", [], limit=0, active=["a"]) == ()
    result = validate_instructions("t", [-5, 10**30], limit=2, active=[])
    assert result == ("-5", str(10**30))
    assert all(type(item) is str for item in result)


@pytest.mark.parametrize(
    ("batch", "limit", "active"),
    [
        ("ab", 5, []),
        ({"a"}, 5, []),
        (None, 5, []),
        (["a", "b"], 1, []),
        (["a"], 0, []),
        ([1.0], 5, []),
        ([True], 5, []),
        ([None], 5, []),
        (["a", "a"], 5, []),
        ([1, "1"], 5, []),
        (["1", 1], 5, []),
        ([5], 5, ["5"]),
        (["5"], 5, ["5"]),
        (["ok", "5"], 5, ["5"]),
    ],
)
def test_validate_instructions_rejects_the_whole_batch(batch, limit, active):
    with pytest.raises(UnexpectedTaskInstructionsError) as info:
        validate_instructions("v", batch, limit=limit, active=active)
    assert info.value.unexpected_task_instructions is batch
    assert info.value.task_name == "v"
    assert "v" in str(info.value)


def test_run_cycle_outcomes():
    t = Task("t", returning(["a", 2]), concurrency=3)
    outcome = run_cycle(t, attempt_number=4, active_task_instructions=["x"])
    assert outcome.instructions == ("a", "2")
    assert outcome.attempt_number == 0
    assert outcome.scheduled
    assert not outcome.failed
    assert outcome.errors == ()
    assert outcome.limit == 2

    empty = run_cycle(Task("e", nothing), attempt_number=4, active_task_instructions=[])
    assert empty.instructions == ()
    assert empty.attempt_number == 5
    assert empty.scheduled

    saturated = run_cycle(
        Task("s", returning(["a"])), attempt_number=4, active_task_instructions=["x"]
    )
    assert saturated.attempt_number == 4
    assert not saturated.scheduled
    assert saturated.saturated
    assert saturated.instructions == ()


def test_run_cycle_reports_errors_instead_of_raising():
    boom = RuntimeError("boom")

    def failing(context):
        raise boom

    outcome = run_cycle(Task("t", failing), attempt_number=1, active_task_instructions=[])
    assert outcome.errors == (boom,)
    assert outcome.failed
    assert outcome.attempt_number == 2
    assert outcome.instructions == ()

    invalid = run_cycle(Task("t", returning([1, 1])), attempt_number=0, active_task_instructions=[])
    assert isinstance(invalid.errors[0], UnexpectedTaskInstructionsError)
    assert invalid.attempt_number == 1
    assert invalid.instructions == ()

    bad_limit = run_cycle(
        Task("t", nothing, calculate_limit=lambda c, a: -1),
        attempt_number=3,
        active_task_instructions=[],
    )
    assert isinstance(bad_limit.errors[0], UnexpectedStateError)
    assert bad_limit.attempt_number == 3
    assert not bad_limit.scheduled

    for bad_active in (None, 5, "abc"):
        outcome = run_cycle(
            Task("t", nothing), attempt_number=2, active_task_instructions=bad_active
        )
        assert isinstance(outcome.errors[0], UnexpectedStateError)
        assert outcome.attempt_number == 2
        assert not outcome.scheduled


def test_run_cycle_respects_may_schedule_and_concurrency_override():
    schedule = returning(["a"])
    refused = run_cycle(
        Task("t", schedule),
        attempt_number=2,
        active_task_instructions=[],
        may_schedule=lambda: False,
    )
    assert not refused.scheduled
    assert refused.attempt_number == 2
    assert len(schedule.contexts) == 0

    override = run_cycle(
        Task("t", returning(["a", "b"])),
        attempt_number=0,
        active_task_instructions=["x"],
        concurrency=3,
    )
    assert override.instructions == ("a", "b")
    assert override.limit == 2


def test_memory_cycle_runner_tracks_attempt_numbers_per_task():
    delay_args = []
    active = {"a": [], "b": ["busy"]}
    runner = MemoryCycleRunner(lambda name: active[name])

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return attempt_number + 0.5

    a = Task("a", returning([], [], ["x"]), calculate_delay=delay)
    b = Task("b", returning(["y"]), calculate_delay=delay)
    assert runner.first(a).delay == 0.5
    assert runner.first(b).delay == 0.5
    assert runner.run(a, lambda: True).delay == 1.5
    assert runner.run(a, lambda: True).delay == 2.5
    report = runner.run(a, lambda: True)
    assert report.instructions == ("x",)
    assert report.delay == 0.5
    assert report.errors == ()
    saturated = runner.run(b, lambda: True)  # b is full: no attempt, number unchanged
    assert saturated.instructions == ()
    assert saturated.delay == 0.5


def test_memory_cycle_runner_reports_errors():
    boom = RuntimeError("active boom")

    def get_active(name):
        raise boom

    runner = MemoryCycleRunner(get_active)
    t = Task("t", nothing, calculate_delay=lambda n: 0.25)
    runner.first(t)
    report = runner.run(t, lambda: True)
    assert report.errors == (boom,)
    assert report.delay == 0.25

    failing_delay = MemoryCycleRunner(no_active)
    t2 = Task("t2", nothing, calculate_delay=lambda n: math.nan)
    first = failing_delay.first(t2)
    assert first.delay == 1.0
    assert isinstance(first.errors[0], UnexpectedStateError)


# -- the fast paths of the pure functions ----------------------------------------------


def test_compute_limit_by_default_rejects_more_active_than_concurrency():
    task = Task("t", nothing, concurrency=2)
    assert compute_limit(task, 2, []) == 2
    assert compute_limit(task, 2, ["a", "b"]) == 0
    with pytest.raises(UnexpectedStateError, match="-1"):
        compute_limit(task, 2, ["a", "b", "c"])
    with pytest.raises(UnexpectedStateError):
        compute_limit(task, 1, ["a", "b"])  # the concurrency argument wins


def test_compute_limit_calls_a_calculate_limit_even_if_it_is_falsy():
    class FalsyLimit:
        def __bool__(self):
            return False

        def __call__(self, concurrency, active):
            return 7

    assert compute_limit(Task("t", nothing, calculate_limit=FalsyLimit()), 1, []) == 7


@pytest.mark.parametrize("empty", [[], ()])
def test_validate_instructions_accepts_an_empty_batch(empty):
    assert validate_instructions("t", empty, limit=0, active=["a"]) == ()
    assert validate_instructions("t", empty, limit=3, active=[]) == ()


@pytest.mark.parametrize("result", ["", b"", {}, set(), None, 0, False, iter([]), "ab", {"a"}])
def test_validate_instructions_still_rejects_what_is_not_a_list_or_tuple(result):
    with pytest.raises(UnexpectedTaskInstructionsError, match="list or tuple") as info:
        validate_instructions("t", result, limit=5, active=[])
    assert info.value.unexpected_task_instructions is result


def test_validate_instructions_still_checks_a_non_empty_batch():
    with pytest.raises(UnexpectedTaskInstructionsError, match="limit"):
        validate_instructions("t", ["a"], limit=0, active=[])
    with pytest.raises(UnexpectedTaskInstructionsError, match="already active"):
        validate_instructions("t", ["a"], limit=2, active=["a"])


@pytest.mark.parametrize("active", [[], (), iter([])])
def test_run_cycle_with_no_active_instructions_schedules(active):
    outcome = run_cycle(
        Task("t", lambda c: [c.limit]), attempt_number=0, active_task_instructions=active
    )
    assert outcome.errors == ()
    assert outcome.instructions == ("1",)


@pytest.mark.parametrize("active", ["", b"", None, 3])
def test_run_cycle_still_rejects_active_instructions_that_are_not_a_sequence(active):
    schedule_calls = Log()
    task = Task("t", lambda context: schedule_calls.append(context) or [])
    outcome = run_cycle(task, attempt_number=2, active_task_instructions=active)
    [error] = outcome.errors
    assert isinstance(error, UnexpectedStateError)
    assert outcome.attempt_number == 2
    assert not outcome.scheduled
    assert schedule_calls.items == []
