"""How the admin's pages show times, outcomes and errors.

Times show to the second, with a relative form ("in 12 s", "overdue by
3 min", "12 s ago") counted from the database's clock, read once per
request: the runners stamp and compare every time by that clock, and a
web host whose clock is skewed would otherwise call a healthy task overdue.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.http import HttpRequest
from django.templatetags.static import static
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext

from ..sql import read_database_now
from ..states import Outcome

__all__ = [
    "EMPTY",
    "ago",
    "database_now",
    "error_cell",
    "first_line",
    "format_seconds",
    "format_time",
    "outcome_badge",
    "time_cell",
    "until",
]

#: What a cell shows for "none": an em dash, as Django's own empty value.
EMPTY = "\u2014"

# Outcomes that are something wrong, and the admin's own icon for each.
_ICONS = {Outcome.FAILED: "admin/img/icon-no.svg", Outcome.TERMINATED: "admin/img/icon-alert.svg"}


def database_now(request: HttpRequest, using: str = "default") -> datetime:
    """The database's time, read on the first call of a request and kept for the others."""
    cache: dict[str, datetime] = request.__dict__.setdefault("_planton_database_now", {})
    if using not in cache:
        cache[using] = read_database_now(using)
    return cache[using]


def format_time(value: datetime | None) -> str:
    """A time to the second, in the current time zone: ``2025-06-01 13:04:05``."""
    if value is None:
        return EMPTY
    if settings.USE_TZ and timezone.is_aware(value):
        value = timezone.localtime(value)
    return date_format(value, "Y-m-d H:i:s")


def format_seconds(seconds: float) -> str:
    """A span for a glance: ``850 ms``, ``12 s``, ``3 min``, ``2 h 5 min``, ``4 d 3 h``."""
    seconds = abs(seconds)
    if seconds < 1:
        return gettext("%(count)d ms") % {"count": round(seconds * 1000)}
    if seconds < 100:
        return gettext("%(count)d s") % {"count": int(seconds)}
    minutes = int(seconds // 60)
    if minutes < 100:
        return gettext("%(count)d min") % {"count": minutes}
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return gettext("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": minutes}
    days, hours = divmod(hours, 24)
    return gettext("%(days)d d %(hours)d h") % {"days": days, "hours": hours}


def until(value: datetime | None, now: datetime) -> str:
    """When something is due: ``in 12 s``, ``now``, or ``overdue by 3 min``."""
    if value is None:
        return gettext("now")
    seconds = (value - now).total_seconds()
    if abs(seconds) < 1:
        return gettext("now")
    if seconds > 0:
        return gettext("in %(span)s") % {"span": format_seconds(seconds)}
    return gettext("overdue by %(span)s") % {"span": format_seconds(seconds)}


def ago(value: datetime | None, now: datetime) -> str:
    """How long ago something happened: ``12 s ago`` (``just now`` within a second)."""
    if value is None:
        return EMPTY
    seconds = (now - value).total_seconds()
    if seconds < 1:
        return gettext("just now")
    return gettext("%(span)s ago") % {"span": format_seconds(seconds)}


def time_cell(value: datetime | None, relative: str) -> SafeString | str:
    """A relative time, with the time to the second in its tooltip."""
    if value is None:
        return relative
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), format_time(value), relative
    )


def outcome_badge(outcome: Outcome, detail: str = "") -> SafeString:
    """The outcome's word; an icon before it only when something went wrong.

    ``detail`` (why it failed, or was terminated) becomes the tooltip.
    """
    icon = _ICONS.get(outcome)
    title = format_html(' title="{}"', detail) if detail and detail != EMPTY else ""
    if icon is None:
        return format_html(
            '<span class="planton-outcome planton-{}"{}>{}</span>',
            outcome.value,
            title,
            outcome.label,
        )
    return format_html(
        '<span class="planton-outcome planton-{}"{}><img src="{}" alt="" width="13" height="13"> '
        "{}</span>",
        outcome.value,
        title,
        static(icon),
        outcome.label,
    )


def first_line(text: str, length: int = 80) -> str:
    """The first non-empty line of ``text``, cut to ``length`` characters."""
    for line in text.splitlines():
        if line.strip():
            return Truncator(line.strip()).chars(length)
    return ""


def error_cell(text: str, at: datetime | None, now: datetime) -> SafeString | str:
    """A task's last error in a list: a red icon, its first line and when, or a dash."""
    if not text:
        return EMPTY
    return format_html(
        '<span class="planton-error"><img src="{}" alt="{}" width="13" height="13"> {}</span>'
        ' <span class="planton-quiet">{}</span>',
        static("admin/img/icon-no.svg"),
        gettext("error"),
        first_line(text),
        time_cell(at, ago(at, now)),
    )
