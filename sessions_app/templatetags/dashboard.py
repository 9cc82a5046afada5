"""Template helpers for readable numbers, durations, times and pretty JSON (always escaped).

The one place for number and time formats: every page shows counts with `number`, costs with
`money`, durations with `duration`/`millis`, moments with `when` or `at`.
"""

import json
from datetime import datetime
from decimal import Decimal
from urllib.parse import quote

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma, naturaltime
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()

# What an absent value shows as: an em dash reads as "nothing" in a table cell.
EMPTY = "\u2014"


@register.filter
def duration(seconds) -> str:
    """Seconds as "42s", "3m 5s", "2h 4m" or "3d 2h"."""
    if seconds in (None, ""):
        return EMPTY
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 or seconds == 0 else f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


@register.filter
def millis(value) -> str:
    """Milliseconds as a readable duration ("840 ms", "31s", "2m 5s")."""
    if value in (None, ""):
        return EMPTY
    value = float(value)
    return f"{value:.0f} ms" if value < 1000 else duration(value / 1000)


@register.filter
def percent(fraction, digits: int = 1) -> str:
    """A 0-1 fraction as "42.9 %"."""
    if fraction in (None, ""):
        return EMPTY
    return f"{float(fraction) * 100:.{int(digits)}f} %"


@register.filter
def money(value, places: int = 2) -> str:
    """A cost as "$1,234.56": `places` decimals (two by default; per-step costs of tool calls use
    `money:4`, since they are fractions of a cent); a non-zero cost below the last place is
    "<$0.01" (or "<$0.0001")."""
    if value in (None, ""):
        return EMPTY
    places = int(places)
    value = Decimal(str(value))
    smallest = Decimal(1).scaleb(-places)
    if value and abs(value) < smallest / 2:
        return f"<${smallest}" if value > 0 else f"-<${smallest}"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.{places}f}"


# Units of the compact number format, smallest first.
_COMPACT = ((1_000, "k"), (1_000_000, "M"), (1_000_000_000, "B"))
COMPACT_FROM = 10_000


@register.filter
def number(value) -> str:
    """A count: "9,876" up to 9,999, then three significant digits: "12.3k", "1.28M", "11.8M"."""
    if value in (None, ""):
        return EMPTY
    try:
        value = float(value)
    except (TypeError, ValueError):  # not a count (a job counter may be a date): as it is
        return str(value)
    if abs(value) < COMPACT_FROM:
        return intcomma(int(value)) if value.is_integer() else intcomma(f"{value:.2f}")
    for size, suffix in _COMPACT:
        scaled = value / size
        digits = 0 if abs(scaled) >= 100 else 1 if abs(scaled) >= 10 else 2
        text = f"{scaled:.{digits}f}"
        if abs(float(text)) < 1000 or suffix == "B":  # 999,999 rounds to 1000k: use M
            return text + suffix
    return intcomma(int(value))


@register.filter
def tracked(session_or_stats) -> bool:
    """Whether tokens and cost were recorded at all (only tool calls carry them): a session or
    period without any shows "not tracked" instead of "0 / $0.00"."""
    get = getattr(session_or_stats, "get", None)
    read = get if callable(get) else lambda name, default=0: getattr(session_or_stats, name, 0)
    names = ("tokens_in", "tokens_out", "cost", "total_tokens", "total_cost", "tool_call_count")
    return any(read(name, 0) for name in names)


@register.simple_tag
def when(moment: datetime | None, empty: str = EMPTY):
    """<time> with a relative text ("3 minutes ago") and the exact local time on hover."""
    if moment is None:
        return empty
    local = timezone.localtime(moment)
    exact = local.strftime("%Y-%m-%d %H:%M:%S %Z")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', local.isoformat(), exact, naturaltime(moment)
    )


def _exact(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


@register.filter
def offset(moment: datetime | None, start: datetime | None) -> str:
    """Time since `start` as "+0s", "+3m 5s", "+2h 4m" (a timeline event after session start)."""
    if moment is None or start is None:
        return ""
    seconds = max((moment - start).total_seconds(), 0.0)
    return "+" + (f"{seconds:.1f}s" if 0 < seconds < 10 else duration(seconds))


@register.simple_tag
def at(moment: datetime | None, start: datetime | None = None):
    """<time> with the exact local time, then the offset from `start` when given."""
    if moment is None:
        return EMPTY
    local = timezone.localtime(moment)
    if start is None:
        return format_html('<time datetime="{}">{}</time>', local.isoformat(), _exact(moment))
    return format_html(
        '<time datetime="{}">{}</time> <span class="offset" title="since the session started">'
        "{}</span>",
        local.isoformat(),
        _exact(moment),
        offset(moment, start),
    )


@register.filter
def session_duration(session) -> str:
    """How long a session ran; a live, running one counts up to now ("12m so far")."""
    if getattr(session, "is_live", False) and getattr(session, "ended_at", None) is None:
        seconds = (timezone.now() - session.created_at).total_seconds()
        return f"{duration(max(seconds, 0))} so far"
    return duration(getattr(session, "duration_seconds", None))


def user_path(user_id: str) -> str:
    """The dashboard URL of a user, every character of the id percent-encoded (a "/" or ".."
    in an id stays inside the one path segment and never leads elsewhere)."""
    if user_id in (".", ".."):
        # Browsers resolve a lone dot segment even when encoded; ask the lookup form instead.
        return reverse("dashboard:users") + "?user=" + quote(user_id, safe="")
    return reverse("dashboard:user", args=["-"]).replace("/-/", "/" + quote(user_id, safe="") + "/")


@register.filter
def user_url(user_id) -> str:
    """user_path() for templates: `href="{{ row.user_id|user_url }}"`."""
    return user_path(str(user_id))


@register.filter
def pretty_json(value) -> str:
    """Indented JSON text; the template escapes it like any other text."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def short_id(value) -> str:
    """The last 8 hex digits of a session id: random in v4 and v7 UUIDs alike, so rows differ
    at a glance (time-ordered ids share their first digits)."""
    return "\u2026" + str(value).replace("-", "")[-8:]


@register.filter
def compact_json(value) -> str:
    """One-line JSON text (for parameters in a timeline row); escaped by the template."""
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)


@register.filter
def get(mapping, key):
    """mapping[key], or None."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def counter_label(name: str) -> str:
    """A job counter's key as words: "archived_sessions" -> "Archived sessions"."""
    return str(name).replace("_", " ").capitalize()


@register.filter
def status_class(status: str) -> str:
    """CSS class of a status badge."""
    return f"badge badge-{status}" if status else "badge"
