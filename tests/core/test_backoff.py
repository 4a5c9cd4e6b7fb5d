"""Tests of the ready-made ``calculate_delay`` builders in ``django_planton.backoff``."""

from __future__ import annotations

import math
import random

import pytest

from django_planton.backoff import constant, exponential, linear

LOW = lambda: 0.0  # noqa: E731 - the most negative jitter
HIGH = lambda: 1.0  # noqa: E731 - the most positive jitter
MIDDLE = lambda: 0.5  # noqa: E731 - no jitter at all


def _never_called() -> float:
    raise AssertionError("rng must not be called without jitter")


# -- constant ------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, 0.25, 5, 3600])
def test_constant_is_the_same_for_every_attempt(seconds):
    delay = constant(seconds)
    values = [delay(n) for n in (0, 1, 2, 10, 10**6)]
    assert values == [float(seconds)] * 5
    assert all(isinstance(value, float) for value in values)


def test_constant_without_jitter_does_not_use_rng():
    delay = constant(2, rng=_never_called)
    assert delay(0) == 2.0
    assert delay(7) == 2.0


@pytest.mark.parametrize(
    ("rng", "expected"), [(LOW, 9.0), (MIDDLE, 10.0), (HIGH, 11.0)], ids=["low", "mid", "high"]
)
def test_constant_jitter_spreads_both_ways(rng, expected):
    delay = constant(10, jitter=0.1, rng=rng)
    assert delay(0) == pytest.approx(expected)
    assert delay(5) == pytest.approx(expected)


def test_constant_full_jitter_stays_between_zero_and_double():
    assert constant(4, jitter=1, rng=LOW)(3) == pytest.approx(0.0)
    assert constant(4, jitter=1, rng=HIGH)(3) == pytest.approx(8.0)


def test_constant_jitter_with_real_random_is_bounded():
    delay = constant(10, jitter=0.2, rng=random.Random(1234).random)
    values = [delay(n) for n in range(500)]
    assert all(8.0 <= value <= 12.0 for value in values)
    assert len(set(values)) > 1  # it does spread


# -- linear --------------------------------------------------------------------


def test_linear_documented_sequence():
    delay = linear(step=10, maximum=25)
    assert [delay(n) for n in range(5)] == [0.0, 10.0, 20.0, 25.0, 25.0]


def test_linear_attempt_zero_is_after_work():
    assert linear(step=2, maximum=10)(0) == 0.0
    assert linear(step=2, maximum=10, after_work=0.5)(0) == 0.5


def test_linear_initial_then_step():
    delay = linear(step=3, maximum=100, initial=1, after_work=0.2)
    assert [delay(n) for n in range(5)] == pytest.approx([0.2, 1.0, 4.0, 7.0, 10.0])


def test_linear_grows_monotonically_up_to_the_cap():
    delay = linear(step=1.5, maximum=10)
    values = [delay(n) for n in range(1, 30)]
    assert values == sorted(values)
    assert max(values) == 10.0
    assert values[-1] == 10.0


def test_linear_cap_is_an_upper_bound_not_a_floor():
    # The cap must never raise a small delay up to the maximum.
    delay = linear(step=1, maximum=50)
    assert delay(1) == 1.0
    assert delay(2) == 2.0
    # An initial above the maximum is capped.
    assert linear(step=1, maximum=5, initial=30)(1) == 5.0


def test_linear_zero_step_keeps_initial():
    delay = linear(step=0, maximum=10, initial=4)
    assert [delay(n) for n in (1, 2, 50)] == [4.0, 4.0, 4.0]


@pytest.mark.parametrize("attempt", [10**6, 10**9])
def test_linear_huge_attempt_numbers_are_capped(attempt):
    assert linear(step=10, maximum=60)(attempt) == 60.0


@pytest.mark.parametrize("rng", [LOW, MIDDLE, HIGH], ids=["low", "mid", "high"])
def test_linear_jitter_is_bounded_and_never_above_maximum(rng):
    plain = linear(step=10, maximum=25, after_work=1)
    jittered = linear(step=10, maximum=25, after_work=1, jitter=0.5, rng=rng)
    for n in range(10):
        base = plain(n)
        value = jittered(n)
        assert base * 0.5 - 1e-9 <= value <= min(base * 1.5, 25.0) + 1e-9
        assert value <= 25.0


def test_linear_jitter_values():
    assert linear(step=10, maximum=100, jitter=0.1, rng=LOW)(1) == pytest.approx(9.0)
    assert linear(step=10, maximum=100, jitter=0.1, rng=HIGH)(1) == pytest.approx(11.0)
    # At the cap a positive jitter is clipped to the maximum, a negative one is not.
    assert linear(step=10, maximum=20, jitter=0.1, rng=HIGH)(5) == 20.0
    assert linear(step=10, maximum=20, jitter=0.1, rng=LOW)(5) == pytest.approx(18.0)


# -- exponential -----------------------------------------------------------------


def test_exponential_documented_sequences():
    delay = exponential(base=1, factor=2, maximum=60)
    assert [delay(n) for n in range(9)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    delay = exponential(base=0.5, factor=3, maximum=10, after_work=0.1)
    assert [delay(n) for n in range(6)] == pytest.approx([0.1, 0.5, 1.5, 4.5, 10.0, 10.0])


def test_exponential_defaults():
    delay = exponential()
    assert delay(0) == 0.0
    assert delay(1) == 1.0
    assert delay(2) == 2.0
    assert delay(9) == 256.0
    assert delay(10) == 300.0  # 512 capped at the default maximum
    assert delay(100) == 300.0


def test_exponential_grows_monotonically_up_to_the_cap():
    delay = exponential(base=0.01, factor=1.7, maximum=42)
    values = [delay(n) for n in range(1, 60)]
    assert values == sorted(values)
    assert values[0] == pytest.approx(0.01)
    assert values[-1] == 42.0
    assert all(value <= 42.0 for value in values)


def test_exponential_cap_is_an_upper_bound_not_a_floor():
    delay = exponential(base=1, factor=2, maximum=1000)
    assert delay(1) == 1.0
    assert delay(3) == 4.0
    # A base above the maximum is capped from the first empty attempt on.
    assert exponential(base=10, maximum=3)(1) == 3.0


def test_exponential_factor_one_is_constant_backoff():
    delay = exponential(base=2, factor=1, maximum=10, after_work=0.5)
    assert [delay(n) for n in (0, 1, 2, 50, 10**6)] == [0.5, 2.0, 2.0, 2.0, 2.0]


def test_exponential_zero_base_and_zero_maximum():
    assert [exponential(base=0)(n) for n in (0, 1, 10**6)] == [0.0, 0.0, 0.0]
    assert [exponential(base=1, maximum=0)(n) for n in (0, 1, 5, 10**6)] == [0.0] * 4


@pytest.mark.parametrize("attempt", [1_000, 10**6, 10**9, 10**30])
@pytest.mark.parametrize("factor", [1.0000001, 1.5, 2, 10, 1e6])
def test_exponential_huge_attempt_numbers_do_not_overflow(attempt, factor):
    value = exponential(base=1, factor=factor, maximum=300)(attempt)
    assert math.isfinite(value)
    assert 0.0 <= value <= 300.0
    if factor >= 1.5:
        assert value == 300.0


def test_exponential_huge_attempt_with_jitter_is_bounded():
    delay = exponential(base=1, maximum=60, jitter=0.3, rng=HIGH)
    assert delay(10**6) == 60.0
    delay = exponential(base=1, maximum=60, jitter=0.3, rng=LOW)
    assert delay(10**6) == pytest.approx(42.0)


@pytest.mark.parametrize("rng", [LOW, MIDDLE, HIGH], ids=["low", "mid", "high"])
def test_exponential_jitter_is_bounded_and_never_above_maximum(rng):
    plain = exponential(base=1, maximum=20, after_work=2)
    jittered = exponential(base=1, maximum=20, after_work=2, jitter=0.25, rng=rng)
    for n in range(12):
        base = plain(n)
        value = jittered(n)
        assert base * 0.75 - 1e-9 <= value <= min(base * 1.25, 20.0) + 1e-9
    assert exponential(base=4, maximum=20, jitter=0.25, rng=MIDDLE)(2) == 8.0
    assert exponential(base=4, maximum=20, jitter=0.25, rng=HIGH)(2) == pytest.approx(10.0)
    assert exponential(base=4, maximum=20, jitter=0.25, rng=LOW)(2) == pytest.approx(6.0)


def test_exponential_jitter_with_real_random_never_above_maximum():
    delay = exponential(base=1, maximum=30, jitter=1, rng=random.Random(99).random)
    values = [delay(n) for n in range(200)]
    assert all(0.0 <= value <= 30.0 for value in values)


def test_without_jitter_rng_is_not_used():
    assert exponential(rng=_never_called)(3) == 4.0
    assert linear(step=1, maximum=3, rng=_never_called)(2) == 2.0


# -- invalid parameters ----------------------------------------------------------

NOT_NUMBERS = [-1, -0.001, math.nan, math.inf, -math.inf, "1", None, True, [1]]


@pytest.mark.parametrize("bad", NOT_NUMBERS)
def test_constant_rejects_invalid_seconds(bad):
    with pytest.raises(ValueError, match="seconds"):
        constant(bad)


@pytest.mark.parametrize("bad", [*NOT_NUMBERS, 1.01, 2])
@pytest.mark.parametrize(
    "build",
    [
        lambda jitter: constant(1, jitter=jitter),
        lambda jitter: linear(step=1, maximum=5, jitter=jitter),
        lambda jitter: exponential(jitter=jitter),
    ],
    ids=["constant", "linear", "exponential"],
)
def test_builders_reject_invalid_jitter(build, bad):
    with pytest.raises(ValueError, match="jitter"):
        build(bad)


@pytest.mark.parametrize(
    ("parameter", "bad"),
    [
        (parameter, bad)
        for parameter in ("step", "maximum", "initial", "after_work")
        for bad in NOT_NUMBERS
        if not (parameter == "initial" and bad is None)  # None: initial defaults to step
    ],
)
def test_linear_rejects_invalid_parameters(parameter, bad):
    kwargs = {"step": 1, "maximum": 10, parameter: bad}
    with pytest.raises(ValueError, match=parameter):
        linear(**kwargs)


@pytest.mark.parametrize("parameter", ["base", "factor", "maximum", "after_work"])
@pytest.mark.parametrize("bad", NOT_NUMBERS)
def test_exponential_rejects_invalid_parameters(parameter, bad):
    with pytest.raises(ValueError, match=parameter):
        exponential(**{parameter: bad})


@pytest.mark.parametrize("factor", [0, 0.5, 0.999])
def test_exponential_rejects_shrinking_factor(factor):
    with pytest.raises(ValueError, match="factor"):
        exponential(factor=factor)


def test_valid_edge_parameters_are_accepted():
    assert constant(0, jitter=0)(1) == 0.0
    assert constant(1, jitter=1)  # full jitter is allowed
    assert linear(step=0, maximum=0)(3) == 0.0
    assert exponential(base=0, factor=1, maximum=0, after_work=0)(3) == 0.0
