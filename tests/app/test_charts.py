"""The SVG charts: pure functions from a series to markup (no database)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from django_planton.admin.charts import ChartFrame, merge_buckets, running_chart, stacked_bars

SVG = "{http://www.w3.org/2000/svg}"
START = datetime(2025, 6, 1, 13, 0, tzinfo=UTC)
FRAME = ChartFrame(title="Executions <per> minute", label_time=lambda t: t.strftime("%H:%M"))
KEYS = [("succeeded", "succeeded"), ("failed", "failed")]


def minutes(*counts: dict[str, int]) -> list[tuple[datetime, dict[str, int]]]:
    return [(START + timedelta(minutes=n), c) for n, c in enumerate(counts)]


def svg_of(markup: str) -> ET.Element:
    """The chart's <svg>, parsed: it must be well-formed XML."""
    svg = re.search(r"<svg.*</svg>", markup, re.DOTALL)
    assert svg is not None
    return ET.fromstring(svg.group(0).replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))


def bars(root: ET.Element, css: str) -> list[ET.Element]:
    return [rect for rect in root.iter(f"{SVG}rect") if css in rect.get("class", "").split()]


def test_stacked_bars_are_as_tall_as_their_counts_and_stack_in_the_keys_order():
    markup = stacked_bars(
        minutes({"succeeded": 4, "failed": 1}, {"succeeded": 2}, {}), keys=KEYS, frame=FRAME
    )
    root = svg_of(markup)
    succeeded, failed = bars(root, "planton-succeeded"), bars(root, "planton-failed")
    assert len(succeeded) == 2
    assert len(failed) == 1
    heights = [float(rect.get("height")) for rect in (*succeeded, *failed)]
    # The y axis ends at 5: 4 of 5, 2 of 5 and 1 of 5 of the plot's height.
    assert heights[0] == pytest.approx(2 * heights[1]) == pytest.approx(4 * heights[2])
    # The failure sits on top of the first minute's successes.
    first, on_top = succeeded[0], failed[0]
    assert float(on_top.get("y")) + float(on_top.get("height")) == pytest.approx(
        float(first.get("y"))
    )
    assert first.get("x") == on_top.get("x")


def test_each_bar_has_a_tooltip_and_the_chart_a_title_and_legend_escaped():
    markup = stacked_bars(minutes({"succeeded": 3, "failed": 1}), keys=KEYS, frame=FRAME)
    root = svg_of(markup)
    titles = [title.text for title in root.iter(f"{SVG}title")]
    assert titles[0] == "Executions <per> minute"
    assert "13:00: 3 succeeded, 1 failed" in titles
    assert "Executions &lt;per&gt; minute" in markup
    assert 'class="planton-swatch planton-failed"' in markup


def test_the_time_axis_names_the_first_and_the_last_bucket():
    markup = stacked_bars(minutes(*[{}] * 60), keys=KEYS, frame=FRAME)
    ticks = [t.text for t in svg_of(markup).iter(f"{SVG}text") if ":" in (t.text or "")]
    assert ticks[0] == "13:00"
    assert ticks[-1] == "13:59"
    assert len(ticks) == 5


def test_an_empty_series_draws_axes_and_no_bar():
    root = svg_of(stacked_bars([], keys=KEYS, frame=FRAME))
    assert bars(root, "planton-bar") == []
    assert root.get("viewBox") == "0 0 720 180"


def test_running_chart_draws_the_concurrency_line_above_lower_bars():
    markup = running_chart(
        [(START + timedelta(minutes=n), count) for n, count in enumerate([2, 4, 0])],
        limit=5,
        frame=FRAME,
        running_label="running",
        limit_label="concurrency",
    )
    root = svg_of(markup)
    [line] = [el for el in root.iter(f"{SVG}line") if el.get("class") == "planton-limit"]
    tallest = max(bars(root, "planton-running"), key=lambda rect: float(rect.get("height")))
    # y grows downwards: the line at 5 is above the top of the bar at 4.
    assert float(line.get("y1")) < float(tallest.get("y"))
    assert len(bars(root, "planton-running")) == 2


def test_merged_buckets_sum_their_counts_from_the_oldest():
    series = minutes(*({"succeeded": 1, "failed": n % 2} for n in range(25)))
    merged = merge_buckets(series, 10)
    assert [start for start, _ in merged] == [START + timedelta(minutes=m) for m in (0, 10, 20)]
    assert [counts for _, counts in merged] == [
        {"succeeded": 10, "failed": 5},
        {"succeeded": 10, "failed": 5},
        {"succeeded": 5, "failed": 2},
    ]
    with pytest.raises(ValueError, match="size"):
        merge_buckets(series, 0)
