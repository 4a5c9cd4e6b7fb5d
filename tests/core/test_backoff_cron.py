"""Tests of ``django_planton.backoff.cron``: calendar delays, DST, the clock hook.

The clock is frozen with time-machine; every expected delay is worked out by
hand (or with zoneinfo arithmetic) from the calendar, never by asking cronsim.
Europe/Berlin in 2026: clocks go 02:00 CET -> 03:00 CEST on 29 March (at
01:00 UTC) and 03:00 CEST -> 02:00 CET on 25 October (at 01:00 UTC).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from django_planton.backoff import cron, using_clock

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0
DAY = 24 * HOUR


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def frozen(moment: datetime) -> time_machine.travel:
    return time_machine.travel(moment, tick=False)


def until(local: datetime, now: datetime) -> float:
    """Seconds from ``now`` to a Berlin wall time, by zoneinfo's reckoning (fold=0)."""
    return (local.replace(tzinfo=BERLIN).astimezone(UTC) - now).total_seconds()


def follow(delay: Callable[[int], float], start: datetime, steps: int) -> list[float]:
    """The delays a task gets if it is attempted exactly at each match, finding nothing."""
    delays = []
    with frozen(start) as traveller:
        now = start
        for _ in range(steps):
            seconds = delay(1)
            delays.append(seconds)
            now += timedelta(seconds=seconds)
            traveller.move_to(now)
    return delays


# -- plain schedules -------------------------------------------------------------


def test_every_five_minutes_mid_hour():
    delay = cron("*/5 * * * *")
    with frozen(utc(2026, 1, 10, 12, 7, 30)):
        assert delay(1) == 150.0
    with frozen(utc(2026, 1, 10, 12, 5, 0, 250_000)):
        assert delay(3) == 299.75


def test_the_delay_is_a_float():
    delay = cron("0 * * * *")
    with frozen(utc(2026, 1, 10, 12, 30)):
        value = delay(1)
    assert value == 1800.0
    assert type(value) is float


@pytest.mark.parametrize("after_work", [0, 0.0, 2.5, 600])
def test_an_attempt_that_found_work_waits_after_work(after_work):
    delay = cron("0 3 * * *", tz="Europe/Berlin", after_work=after_work)
    with frozen(utc(2026, 1, 10, 1, 0)):
        assert delay(0) == float(after_work)
        assert type(delay(0)) is float
        assert delay(-1) == float(after_work)
        assert delay(1) == HOUR


def test_an_attempt_that_found_work_does_not_read_the_clock():
    def broken_clock() -> datetime:
        raise AssertionError("the clock must not be read after work was found")

    delay = cron("0 3 * * *", after_work=5)
    with using_clock(broken_clock):
        assert delay(0) == 5.0


def test_daily_in_berlin_from_a_utc_instant():
    delay = cron("0 3 * * *", tz="Europe/Berlin")
    # 01:00 UTC is 02:00 CET in January; 03:00 CET is 02:00 UTC.
    now = utc(2026, 1, 10, 1, 0)
    with frozen(now):
        assert delay(1) == HOUR == until(datetime(2026, 1, 10, 3, 0), now)


def test_the_default_zone_is_utc():
    delay = cron("0 3 * * *")
    with frozen(utc(2026, 7, 10, 1, 0)):
        assert delay(1) == 2 * HOUR


def test_a_day_with_no_match_waits_for_the_next_leap_year():
    delay = cron("0 12 29 2 *")
    # 2026-03-01 -> 2027-03-01 is 365 days, 2027-03-01 -> 2028-02-29 is 365
    # more (2028-02-29 is the day before 2028-03-01), then 12 hours.
    with frozen(utc(2026, 3, 1, 0, 0)):
        assert delay(1) == 730 * DAY + 12 * HOUR


def test_missed_matches_are_not_queued_up():
    """Asked long after matches went by, the delay is to the next one to come."""
    delay = cron("0 3 * * *")
    with frozen(utc(2026, 1, 13, 14, 0)):  # three 03:00s since 2026-01-10 went by
        assert delay(1) == 13 * HOUR


# -- daylight saving time ----------------------------------------------------------


def test_spring_forward_a_skipped_time_runs_at_the_end_of_the_gap():
    """02:30 does not exist on 2026-03-29 in Berlin: it runs at 03:00 CEST (01:00 UTC)."""
    evening = utc(2026, 3, 28, 21, 0)  # 22:00 CET
    delay = cron("30 2 * * *", tz="Europe/Berlin")
    with frozen(evening):
        assert delay(1) == 4 * HOUR  # to 01:00 UTC
    # Attempted then, it waits for the next day's 02:30 CEST (00:30 UTC): 23.5 h.
    with frozen(utc(2026, 3, 29, 1, 0)):
        assert delay(1) == 23.5 * HOUR
        assert delay(1) == until(datetime(2026, 3, 30, 2, 30), utc(2026, 3, 29, 1, 0))


def test_spring_forward_a_job_after_the_gap_keeps_its_wall_time():
    evening = utc(2026, 3, 28, 21, 0)  # 22:00 CET
    delay = cron("0 3 * * *", tz="Europe/Berlin")
    with frozen(evening):
        # 03:00 CEST on the 29th is 01:00 UTC: 4 hours, one less than on a plain night.
        assert delay(1) == 4 * HOUR == until(datetime(2026, 3, 29, 3, 0), evening)
    with frozen(utc(2026, 3, 29, 1, 0)):
        assert delay(1) == DAY  # 03:00 CEST to 03:00 CEST


def test_spring_forward_the_skipped_time_runs_once():
    """Attempted at 03:00 CEST for 02:30, it does not run again at 03:00 CEST's next second."""
    delay = cron("30 2 * * *", tz="Europe/Berlin")
    assert follow(delay, utc(2026, 3, 28, 21, 0), 3) == [4 * HOUR, 23.5 * HOUR, DAY]


def test_fall_back_a_repeated_time_runs_once():
    """02:30 happens twice on 2026-10-25 in Berlin; the job runs at the first (00:30 UTC)."""
    delay = cron("30 2 * * *", tz="Europe/Berlin")
    with frozen(utc(2026, 10, 24, 22, 0)):  # 00:00 CEST on the 25th
        assert delay(1) == 2.5 * HOUR
    first = utc(2026, 10, 25, 0, 30)  # 02:30 CEST
    with frozen(first):
        # Not the second 02:30 (CET, 01:30 UTC, an hour on) but the next day's:
        # 02:30 CET on the 26th is 01:30 UTC, 25 hours on.
        assert delay(1) == 25 * HOUR
        assert delay(1) == until(datetime(2026, 10, 26, 2, 30), first)


def test_fall_back_the_repeated_hour_does_not_run_the_time_again():
    delay = cron("30 2 * * *", tz="Europe/Berlin")
    # 01:00 UTC is 02:00 CET, the second 02:00: the 02:30 ahead is the one
    # that already ran, so the wait is to 01:30 UTC on the 26th.
    with frozen(utc(2026, 10, 25, 1, 0)):
        assert delay(1) == 24.5 * HOUR
    # At the second 02:30 itself, likewise.
    with frozen(utc(2026, 10, 25, 1, 30)):
        assert delay(1) == DAY
    # Just after the first 02:30, before the change.
    with frozen(utc(2026, 10, 25, 0, 45)):
        assert delay(1) == 24.75 * HOUR


def test_fall_back_a_daily_job_walks_across_the_change():
    delay = cron("30 2 * * *", tz="Europe/Berlin")
    # 00:30 UTC (CEST) on the 25th, then 01:30 UTC (CET) on the 26th and 27th.
    assert follow(delay, utc(2026, 10, 24, 22, 0), 4) == [2.5 * HOUR, 25 * HOUR, DAY, DAY]


@pytest.mark.parametrize(
    "start",
    [utc(2026, 3, 28, 22, 0), utc(2026, 10, 24, 22, 0)],
    ids=["spring-forward", "fall-back"],
)
def test_hourly_steps_are_an_hour_of_real_time_across_the_change(start):
    delay = cron("0 * * * *", tz="Europe/Berlin")
    # Berlin's offset is a whole number of hours: every UTC hour is a match.
    assert follow(delay, start, 8) == [HOUR] * 8


def test_hourly_at_half_past_runs_twice_in_the_repeated_hour():
    delay = cron("30 * * * *", tz="Europe/Berlin")
    # From 23:40 UTC: 00:30 UTC (02:30 CEST), 01:30 UTC (02:30 CET), 02:30 UTC.
    assert follow(delay, utc(2026, 10, 24, 23, 40), 3) == [50 * 60.0, HOUR, HOUR]


# -- never 0, never negative ---------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "tz", "at_match", "expected"),
    [
        ("*/5 * * * *", "UTC", utc(2026, 1, 10, 12, 5), 300.0),
        ("* * * * *", "UTC", utc(2026, 1, 10, 12, 5), 60.0),
        ("* * * * * *", "UTC", utc(2026, 1, 10, 12, 5), 1.0),
        ("0 3 * * *", "Europe/Berlin", utc(2026, 1, 10, 2, 0), DAY),
        ("30 2 * * *", "Europe/Berlin", utc(2026, 3, 29, 1, 0), 23.5 * HOUR),
        ("30 2 * * *", "Europe/Berlin", utc(2026, 10, 25, 0, 30), 25 * HOUR),
        ("0 0 1 1 *", "UTC", utc(2026, 1, 1), 365 * DAY),
    ],
)
def test_called_exactly_at_a_match_it_waits_for_the_next(expression, tz, at_match, expected):
    delay = cron(expression, tz=tz)
    with frozen(at_match):
        assert delay(1) == expected


def test_just_before_a_match_the_delay_is_small_but_positive():
    delay = cron("*/5 * * * *")
    with frozen(utc(2026, 1, 10, 12, 4, 59, 999_999)):
        assert delay(1) == 1e-6
    with frozen(utc(2026, 1, 10, 12, 5, 0, 1)):
        assert delay(1) == 299.999999


# -- the clock hook ------------------------------------------------------------------


def test_using_clock_overrides_the_frozen_clock():
    delay = cron("0 * * * *")
    with frozen(utc(2026, 1, 10, 12, 0)):
        assert delay(1) == HOUR
        with using_clock(lambda: utc(2026, 1, 10, 12, 45)):
            assert delay(1) == 15 * 60.0
            with using_clock(lambda: utc(2026, 1, 10, 12, 59)):
                assert delay(1) == 60.0
            assert delay(1) == 15 * 60.0
        assert delay(1) == HOUR


def test_using_clock_accepts_any_aware_datetime():
    delay = cron("0 3 * * *", tz="Europe/Berlin")
    tokyo = datetime(2026, 1, 10, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 01:00 UTC
    with using_clock(lambda: tokyo):
        assert delay(1) == HOUR


def test_using_clock_is_reset_when_the_block_raises():
    delay = cron("0 * * * *")
    with frozen(utc(2026, 1, 10, 12, 0)):
        with pytest.raises(RuntimeError), using_clock(lambda: utc(2026, 1, 10, 12, 30)):
            raise RuntimeError("boom")
        assert delay(1) == HOUR


def test_a_naive_clock_is_a_clear_error():
    delay = cron("0 * * * *")
    with (
        using_clock(lambda: datetime(2026, 1, 10, 12, 0)),
        pytest.raises(ValueError, match="aware"),
    ):
        delay(1)


def test_the_clock_override_is_per_thread():
    delay = cron("0 * * * *")
    set_here = threading.Event()
    seen_there: list[float] = []
    set_there = threading.Event()
    checked_here = threading.Event()

    def other_thread() -> None:
        set_here.wait(5)
        seen_there.append(delay(1))  # the main thread's override is set now
        with using_clock(lambda: utc(2026, 1, 10, 12, 50)):
            seen_there.append(delay(1))
            set_there.set()
            checked_here.wait(5)

    with frozen(utc(2026, 1, 10, 12, 0)):
        thread = threading.Thread(target=other_thread)
        thread.start()
        with using_clock(lambda: utc(2026, 1, 10, 12, 30)):
            set_here.set()
            assert set_there.wait(5)
            assert delay(1) == 30 * 60.0  # not the other thread's 12:50
            checked_here.set()
        thread.join(5)
    assert not thread.is_alive()
    assert seen_there == [HOUR, 10 * 60.0]


def test_the_build_time_check_reads_the_clock_hook():
    with (
        using_clock(lambda: datetime(2026, 1, 10, 12, 0)),
        pytest.raises(ValueError, match="aware"),
    ):
        cron("0 * * * *")


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression", ["61 * * * *", "not a cron line", "", "* * * *", "0 25 * * *"]
)
def test_a_bad_expression_is_a_value_error_naming_it(expression):
    with pytest.raises(ValueError, match="Bad cron expression") as caught:
        cron(expression)
    assert repr(expression) in str(caught.value)


def test_an_expression_that_is_not_a_string_is_a_value_error():
    with pytest.raises(ValueError, match="must be a string"):
        cron(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "tz", ["Mars/Olympus_Mons", "europe/berlin", "", "../etc", "/etc/localtime"]
)
def test_an_unknown_time_zone_is_a_value_error_naming_it(tz):
    with pytest.raises(ValueError, match="Unknown time zone") as caught:
        cron("0 3 * * *", tz=tz)
    assert repr(tz) in str(caught.value)


@pytest.mark.parametrize("after_work", [-1, float("nan"), float("inf"), True, "0"])
def test_a_bad_after_work_is_a_value_error(after_work):
    with pytest.raises(ValueError, match="after_work"):
        cron("0 3 * * *", after_work=after_work)


def _raises_within(seconds: float, build: Callable[[], object]) -> BaseException | None:
    """What ``build()`` raised, failing the test instead of hanging if it takes too long."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            build()
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "cron() hung on an expression that never matches"
    return raised[0] if raised else None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # 30 February: cronsim refuses it outright.
        ("0 0 30 2 *", "Bad cron expression '0 0 30 2 \\*'"),
        # The 1st or 21st that is also the month's last Monday (the 22nd at the
        # earliest): a valid expression that cronsim searches 50 years for.
        ("0 0 */20 * 1L", "'0 0 \\*/20 \\* 1L' has no match"),
    ],
)
def test_an_expression_that_never_matches_is_a_value_error_not_a_hang(expression, message):
    with frozen(utc(2026, 1, 10, 12, 0)):
        error = _raises_within(10, lambda: cron(expression))
    assert isinstance(error, ValueError)
    with pytest.raises(ValueError, match=message):
        raise error
