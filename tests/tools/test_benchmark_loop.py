"""The loop-alone workload (benchmarks/workloads/loop.py) and its report line."""

from __future__ import annotations

from benchmarks.report import SCALE_HEADERS, loop_floor_line
from benchmarks.workloads.loop import NoCycles, run
from django_planton import Task


def _task(name: str) -> Task:
    return Task(name=name, schedule=lambda context: [])


def test_no_cycles_answers_each_task_of_a_batch_with_a_one_second_delay():
    cycles = NoCycles()
    reports = cycles.run_batch([_task("a"), _task("b")], lambda: True)
    assert [report.delay for report in reports] == [1.0, 1.0]
    assert all(not report.instructions and not report.errors for report in reports)
    assert cycles.run(_task("c"), lambda: True).delay == 1.0
    assert cycles.attempts == 3
    assert cycles.first(_task("d")).delay == 0.0  # due at once when the loop starts


def test_the_loop_alone_attempts_each_task_about_once_a_second():
    result = run({"tasks": 100, "warmup": 1.0, "seconds": 2.0})
    assert result["problems"] == []
    assert 150 <= result["attempts"] <= 250  # 100 tasks, a 1 s delay, 2 s measured
    assert result["cpu_us_per_attempt"] > 0


def _curve_row(cpu_us: float | None) -> list[object]:
    row: list[object] = [None] * len(SCALE_HEADERS)
    row[SCALE_HEADERS.index("CPU us/attempt")] = cpu_us
    return row


def test_the_floor_line_compares_the_loop_with_the_runner_at_the_same_count():
    result = {"tasks": 10_000, "cpu_us_per_attempt": 9.0, "attempts_per_s": 10_000.0}
    line = loop_floor_line(result, _curve_row(36.0))
    assert "10,000 tasks: 9.0 us of CPU per attempt, 25% of the runner's 36.0 us" in line


def test_the_floor_line_says_when_the_loop_was_not_measured():
    assert "not measured" in loop_floor_line(None, _curve_row(36.0))
    line = loop_floor_line(
        {"tasks": 10, "cpu_us_per_attempt": 5.0, "attempts_per_s": 10.0}, _curve_row(None)
    )
    assert "5.0 us of CPU per attempt;" in line  # no runner figure to compare with
