"""The benchmarks' correctness checks and targets (benchmarks/checks.py), on plain figures.

Each rule is shown passing on what a good run leaves and reporting on what
a bad one would; no database, no child process.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.checks import (
    Attempt,
    ExecutionRow,
    Target,
    already_ended_problems,
    attempt_gap_problems,
    backoff_problems,
    cadence_target,
    connection_limit,
    drain_problems,
    drain_target,
    fairness_target,
    finished_problems,
    idle_beside_busy_problems,
    idle_problems,
    idle_targets,
    median,
    merge_attempt_times,
    rate,
    ratio_to_baseline,
    refill_target,
    run_problems,
    scale_target,
    shortest_gaps,
    spread,
)


def executions(count: int, *, at_once: int = 1) -> list[ExecutionRow]:
    """``count`` completed executions for accounts 1..count, ``at_once`` running together."""
    return [
        ExecutionRow(str(n), False, False, n // at_once, n // at_once + 1)
        for n in range(1, count + 1)
    ]


def drained(rows: list[ExecutionRow], **overrides: Any) -> list[str]:
    figures: dict[str, Any] = {
        "accounts": 4,
        "account_ids": {"1", "2", "3", "4"},
        "owed": 0,
        "executions": rows,
        "concurrency": 2,
    }
    return drain_problems(**{**figures, **overrides})


# -- the drain check --------------------------------------------------------------


def test_a_perfect_drain_has_no_problems() -> None:
    assert drained(executions(4, at_once=2)) == []


def test_an_account_never_processed_is_reported() -> None:
    problems = drained(executions(3), owed=1)
    assert "1 account(s) never processed" in problems
    assert "3 executions for 4 accounts" in problems
    assert "executions do not match the accounts" in problems


def test_an_account_dispatched_twice_is_reported() -> None:
    rows = [*executions(4), ExecutionRow("4", False, False, 9, 10)]
    assert "1 account(s) dispatched more than once" in drained(rows)


def test_missing_accounts_are_reported() -> None:
    assert "3 accounts, not 4" in drained(executions(4), account_ids={"1", "2", "3"})


def test_executions_left_running_or_failed_are_reported() -> None:
    rows = executions(4)
    rows[0] = rows[0]._replace(running=True, ended_at=None)
    rows[1] = rows[1]._replace(failed=True)
    problems = drained(rows)
    assert "1 execution(s) left running" in problems
    assert "1 execution(s) failed" in problems


def test_more_executions_at_once_than_the_concurrency_are_reported() -> None:
    assert drained(executions(4, at_once=4)) == ["3 executions ran at once, concurrency 2"]


def test_an_execution_ending_before_it_started_is_reported_not_raised() -> None:
    rows = executions(4)
    rows[2] = rows[2]._replace(started_at=5, ended_at=4)
    assert drained(rows) == ["not a closed span: (5, 4)"]


# -- the other checks of one run ------------------------------------------------------


def test_a_run_that_finished_in_time_passes() -> None:
    assert finished_problems(True, 120) == []
    assert finished_problems(False, 120) == ["not drained within 120 s"]


def test_completions_that_ended_nothing_are_reported() -> None:
    assert already_ended_problems(0) == []
    assert already_ended_problems(2) == ["2 execution(s) were already ended when completed"]


def test_an_idle_task_beside_a_busy_one_keeps_its_delay() -> None:
    assert idle_beside_busy_problems(1.3) == []
    assert idle_beside_busy_problems(4.0) == [
        "idle task attempted 4.0 times per second (delay 1 s)"
    ]


def test_an_idle_task_backs_off_even_when_woken() -> None:
    good = {"alone": {"attempts": 5, "cycles": 5}, "woken": {"attempts": 6, "cycles": 6}}
    assert backoff_problems(good, 5) == []
    bad = {"alone": {"attempts": 5, "cycles": 5}, "woken": {"attempts": 40, "cycles": 40}}
    assert backoff_problems(bad, 5) == ["idle task attempted 40 times in 5 s (woken), delay 1 s"]


def test_idle_tasks_must_be_attempted_about_once_a_second() -> None:
    assert idle_problems(attempts=2_480, tasks=500, wall=5.0) == []
    assert idle_problems(attempts=1_000, tasks=500, wall=5.0) == [
        "1000 attempts of 500 tasks in 5.0 s"
    ]


def test_a_child_run_fails_without_a_result_with_problems_or_with_a_bad_exit() -> None:
    assert run_problems({"problems": []}, 0, "x.log") == []
    assert run_problems(None, None, "x.log") == ["no result (exit None), see x.log"]
    assert run_problems({"problems": ["late"]}, 0, "x.log") == ["late"]
    assert run_problems({"problems": []}, 1, "x.log") == ["exit 1, see x.log"]


def test_run_problems_leaves_the_result_alone() -> None:
    result = {"problems": ["late"]}
    run_problems(result, 1, "x.log")
    assert result == {"problems": ["late"]}


# -- targets ----------------------------------------------------------------------


def drain_run(instructions: int, wall: float, round_number: int) -> dict[str, Any]:
    return {"instructions": instructions, "wall": wall, "round": round_number}


def test_rate_and_median() -> None:
    assert rate(drain_run(1_000, 2.0, 1)) == 500.0
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([]) is None


def test_the_ratio_to_the_baseline_pairs_runs_by_round() -> None:
    results = {
        "variant": [drain_run(1_000, 1.0, 1), drain_run(1_000, 2.0, 2)],  # 1,000 then 500/s
        "baseline": [drain_run(1_000, 1.0, 1), drain_run(1_000, 4.0, 2)],  # 1,000 then 250/s
    }
    overall, paired = ratio_to_baseline(results, "variant", "baseline") or (0.0, 0.0)
    assert paired == 1.5  # median of 1.0 and 2.0, round by round
    assert overall == 750 / 625  # ratio of the medians


def test_no_ratio_without_a_baseline_or_its_runs() -> None:
    results = {"variant": [drain_run(1_000, 1.0, 1)], "baseline": []}
    assert ratio_to_baseline(results, "variant", None) is None
    assert ratio_to_baseline(results, "variant", "baseline") is None


def test_a_drain_target_is_met_from_four_fifths_of_its_baseline() -> None:
    assert drain_target("batch", "baseline", (1.2, 0.8)) == Target(
        "drain, batch: >= 0.8x baseline (0.80x)", True
    )
    assert drain_target("batch", "baseline", (1.0, 0.5)).ok is False
    assert drain_target("batch", "baseline", None) == Target(
        "drain, batch: >= 0.8x baseline (no result)", None
    )


def test_a_refill_target_wants_a_median_gap_under_10_ms() -> None:
    assert refill_target("another thread", 5.2) == Target(
        "slot refill, another thread: median gap < 10 ms", True
    )
    assert refill_target("another thread", 1_000.0).ok is False
    assert refill_target("another thread", None).ok is None


def idle_result(**overrides: Any) -> dict[str, Any]:
    figures = {
        "tasks": 500,
        "workers": 4,
        "cpu_share": 0.015,
        "connections_max": 5,
        "attempts_per_s": 500.0,
    }
    return {**figures, **overrides}


def test_an_idle_runner_that_costs_little_meets_its_targets() -> None:
    assert connection_limit(4) == 7
    assert [target.ok for target in idle_targets(idle_result())] == [True, True, True]


def test_an_idle_runner_that_costs_too_much_misses_them() -> None:
    busy = idle_result(cpu_share=0.05, connections_max=9, attempts_per_s=600.0)
    assert [target.ok for target in idle_targets(busy)] == [False, False, False]


def test_unknown_connections_are_no_verdict() -> None:
    assert idle_targets(idle_result(connections_max=None))[1].ok is None


def test_the_executor_target_is_met_at_four_fifths_of_the_ideal() -> None:
    from benchmarks.checks import executor_target

    assert executor_target("Threads", 800.0, 1000.0).ok is True
    assert executor_target("Threads", 799.0, 1000.0).ok is False
    assert executor_target("Threads", None, 1000.0).ok is None
    assert "(0.33x)" in executor_target("Threads", 333.0, 1000.0).name


# -- 6. scale: several runners on the same tasks ------------------------------------


def test_attempt_times_are_merged_across_runners_and_sorted() -> None:
    merged = merge_attempt_times([{"a": [2.0, 0.0]}, {"a": [1.0], "b": [5.0]}, {}])
    assert merged == {
        "a": [Attempt(0.0, 0), Attempt(1.0, 1), Attempt(2.0, 0)],
        "b": [Attempt(5.0, 1)],
    }


def test_tasks_attempted_once_per_delay_across_runners_pass() -> None:
    # Three runners take turns, one attempt a second between them.
    times = merge_attempt_times([{"a": [0.0, 3.01]}, {"a": [1.0]}, {"a": [2.0], "b": [0.5]}])
    assert attempt_gap_problems(times, 1.0) == []
    [(task, gap)] = shortest_gaps(times).items()  # b was attempted once: no gap
    assert (task, gap.first, gap.second) == ("a", 0, 1)
    assert gap.seconds == pytest.approx(1.0)


def test_two_runners_attempting_a_task_within_its_delay_are_reported() -> None:
    times = merge_attempt_times([{"a": [0.0, 1.0], "b": [0.0]}, {"a": [0.02], "b": [0.95]}])
    [problem] = attempt_gap_problems(times, 1.0)
    assert problem.startswith("1 task(s) attempted sooner than their delay of 1 s allows")
    assert "1 of them by two runners (shortest gap 20 ms, a, runners 1 then 2)" in problem


def test_one_runner_attempting_a_task_twice_within_its_delay_is_reported_too() -> None:
    times = merge_attempt_times([{"a": [0.0, 0.5, 1.5]}, {"a": [2.5]}])
    [problem] = attempt_gap_problems(times, 1.0)
    assert "0 of them by two runners (shortest gap 500 ms, a, runners 1 then 1)" in problem


def test_the_spread_of_work_over_runners() -> None:
    even = spread([10, 10, 10, 10])
    assert even is not None
    assert even.shares == (0.25, 0.25, 0.25, 0.25)
    assert (even.max_over_min, even.cv) == (1.0, 0.0)
    skewed = spread([30, 10])
    assert skewed is not None
    assert skewed.max_over_min == 3.0
    assert skewed.cv == pytest.approx(0.5)
    one_does_all = spread([0, 40, 0, 0])
    assert one_does_all is not None
    assert one_does_all.max_over_min is None
    assert one_does_all.cv == pytest.approx(3**0.5)
    assert spread([]) is None
    assert spread([0, 0]) is None


def test_the_fairness_target_allows_twice_the_fair_share() -> None:
    assert fairness_target("busy", spread([50, 25, 25, 0])).ok is True  # 50% <= 2 x 25%
    unfair = fairness_target("busy", spread([0, 40, 0, 0]))
    assert unfair.ok is False
    assert "fair share of 25.0% (busiest 100.0%)" in unfair.name
    assert fairness_target("busy", None).ok is None


def test_the_cadence_target_wants_the_delays_rate_no_more_no_less() -> None:
    assert cadence_target("idle", 2_000.0, 2_000.0).ok is True
    assert cadence_target("idle", 1_500.0, 2_000.0).ok is False  # starved
    assert cadence_target("idle", 2_200.0, 2_000.0).ok is False  # attempted too often
    assert "(1.00x)" in cadence_target("idle", 2_000.0, 2_000.0).name
    assert cadence_target("idle", None, 2_000.0).ok is None


def test_the_scale_target_is_ten_microseconds_per_attempt() -> None:
    met = scale_target(10_000, 9.5, 0.095)
    assert met.ok is True
    assert "10,000 idle tasks" in met.name
    assert "(10 us, 9.5% of a core)" in met.name
    assert scale_target(10_000, 30.0, 0.3).ok is False
    assert scale_target(10_000, None, None).ok is None
