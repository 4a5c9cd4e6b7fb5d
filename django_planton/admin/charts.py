"""Charts drawn on the server as SVG: pure functions from a series to markup.

Nothing is fetched from a CDN and no script runs: the page carries the
chart itself. The SVG holds classes, not colours; the admin's stylesheet
(``django_planton/admin.css``) colours them, for its light and dark modes.
Each bar carries a ``<title>``, which browsers show as a tooltip.

Pure Python (no Django): the callers pass the labels, already translated,
and a function that writes a time as the reader's clock shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

__all__ = ["ChartFrame", "Series", "merge_buckets", "running_chart", "stacked_bars"]

#: One bar per bucket: its start, and a count per key.
Series = Sequence[tuple[datetime, Mapping[str, int]]]

# Room for the axes' labels around the plot, in the SVG's own units.
_LEFT, _RIGHT, _TOP, _BOTTOM = 40, 8, 8, 22
# How many times the x axis names.
_TICKS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class ChartFrame:
    """What every chart needs besides its figures: a title, a size, how to write a time."""

    #: Read by screen readers (``aria-label``) and shown as the SVG's tooltip.
    title: str
    #: Writes a bucket's start on the x axis (e.g. ``13:05`` in the reader's time zone).
    label_time: Callable[[datetime], str]
    width: int = 720
    height: int = 180


def merge_buckets(series: Series, size: int) -> list[tuple[datetime, dict[str, int]]]:
    """Every ``size`` buckets in one, from the oldest: a day of minutes as 144 bars of 10."""
    if size < 1:
        raise ValueError(f"size must be 1 or more, got {size}.")
    merged: list[tuple[datetime, dict[str, int]]] = []
    for index, (start, counts) in enumerate(series):
        if index % size == 0:
            merged.append((start, {}))
        total = merged[-1][1]
        for key, count in counts.items():
            total[key] = total.get(key, 0) + count
    return merged


def stacked_bars(series: Series, *, keys: Sequence[tuple[str, str]], frame: ChartFrame) -> str:
    """A bar per bucket, its counts stacked in the order of ``keys`` (key, label).

    Each bar's tooltip names its counts: ``13:05: 3 succeeded, 1 failed``.
    """
    highest = max((sum(counts.get(key, 0) for key, _ in keys) for _, counts in series), default=0)
    scale = _Scale(frame, [start for start, _ in series], highest)
    parts: list[str] = []
    for index, (start, counts) in enumerate(series):
        tooltip = ", ".join(
            f"{counts.get(key, 0)} {label}" for key, label in keys if counts.get(key, 0)
        )
        bar = [f"<title>{escape(frame.label_time(start))}: {escape(tooltip or '0')}</title>"]
        base = 0
        for key, _label in keys:
            count = counts.get(key, 0)
            if count:
                bar.append(scale.bar(index, base, count, f"planton-bar planton-{key}"))
                base += count
        parts.append(f'<g class="planton-bucket">{"".join(bar)}</g>')
    legend = [(f"planton-{key}", label) for key, label in keys]
    return _svg(frame, scale, parts, legend)


def running_chart(
    series: Sequence[tuple[datetime, int]],
    *,
    limit: int,
    frame: ChartFrame,
    running_label: str,
    limit_label: str,
) -> str:
    """The most executions running at once per bucket, against a line at ``limit``."""
    highest = max(max((count for _, count in series), default=0), limit)
    scale = _Scale(frame, [start for start, _ in series], highest)
    parts = []
    for index, (start, count) in enumerate(series):
        title = f"<title>{escape(frame.label_time(start))}: {count} {escape(running_label)}</title>"
        rect = scale.bar(index, 0, count, "planton-bar planton-running") if count else ""
        parts.append(f'<g class="planton-bucket">{title}{rect}</g>')
    y = scale.y(limit)
    parts.append(
        f'<line class="planton-limit" x1="{_LEFT}" x2="{frame.width - _RIGHT}" '
        f'y1="{y:.1f}" y2="{y:.1f}"><title>{escape(limit_label)}: {limit}</title></line>'
    )
    legend = [("planton-running", running_label), ("planton-limit-key", limit_label)]
    return _svg(frame, scale, parts, legend)


class _Scale:
    """From buckets and counts to the SVG's coordinates; the y axis ends at a round number."""

    def __init__(self, frame: ChartFrame, starts: list[datetime], highest: int) -> None:
        self.frame = frame
        self.starts = starts
        self.top = _round_up(highest)
        self.plot_width = frame.width - _LEFT - _RIGHT
        self.plot_height = frame.height - _TOP - _BOTTOM
        self.step = self.plot_width / max(len(starts), 1)

    def y(self, count: float) -> float:
        return _TOP + self.plot_height * (1 - count / self.top)

    def bar(self, index: int, base: int, count: int, css: str) -> str:
        gap = 1.0 if self.step > 3 else 0.0
        x = _LEFT + index * self.step + gap / 2
        top = self.y(base + count)
        height = self.y(base) - top
        return (
            f'<rect class="{css}" x="{x:.2f}" y="{top:.2f}" '
            f'width="{max(self.step - gap, 0.5):.2f}" height="{height:.2f}"/>'
        )


def _round_up(value: int) -> int:
    """The y axis's top: 1, 2, 5, 10, 20, 50... at or above ``value``."""
    top = 1
    while top < value:
        for factor in (2, 5 / 2, 2):
            top = int(top * factor)
            if top >= value:
                break
    return top


def _svg(frame: ChartFrame, scale: _Scale, parts: list[str], legend: list[tuple[str, str]]) -> str:
    width, height = frame.width, frame.height
    bottom = height - _BOTTOM
    axes = [
        f'<line class="planton-axis" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{bottom}" '
        f'y2="{bottom}"/>',
        f'<text class="planton-tick" x="{_LEFT - 4}" y="{_TOP + 4}" text-anchor="end">'
        f"{scale.top}</text>",
        f'<text class="planton-tick" x="{_LEFT - 4}" y="{bottom}" text-anchor="end">0</text>',
    ]
    axes += _time_ticks(frame, scale, bottom=bottom)
    keys = "".join(
        f'<span class="planton-key"><span class="planton-swatch {css}"></span>{escape(label)}'
        "</span>"
        for css, label in legend
    )
    return (
        f'<figure class="planton-figure"><svg class="planton-chart" role="img" '
        f'aria-label="{escape(frame.title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">'
        f"<title>{escape(frame.title)}</title>{''.join(axes)}{''.join(parts)}</svg>"
        f'<figcaption><span class="planton-chart-title">{escape(frame.title)}</span>'
        f"{keys}</figcaption></figure>"
    )


def _time_ticks(frame: ChartFrame, scale: _Scale, *, bottom: int) -> list[str]:
    """The start of a few buckets under the x axis, evenly spread, the first and last included."""
    count = len(scale.starts)
    if not count:
        return []
    shown = sorted({round(n * (count - 1) / (_TICKS - 1)) for n in range(_TICKS)})
    ticks = []
    for index in shown:
        x = _LEFT + (index + 0.5) * scale.step
        anchor = "start" if index == 0 else "end" if index == count - 1 else "middle"
        ticks.append(
            f'<text class="planton-tick" x="{x:.1f}" y="{bottom + 15}" text-anchor="{anchor}">'
            f"{escape(frame.label_time(scale.starts[index]))}</text>"
        )
    return ticks
