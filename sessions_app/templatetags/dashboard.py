"""Template helpers for readable numbers, durations, times and pretty JSON (always escaped)."""

import json
from datetime import datetime
from decimal import Decimal

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma, naturaltime
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
def money(value) -> str:
    """A cost as "$1,234.56" (four decimals under a dollar, so small costs stay visible)."""
    if value in (None, ""):
        return EMPTY
    value = Decimal(str(value))
    places = 4 if abs(value) < 1 and value != 0 else 2
    whole = f"{value:,.{places}f}"
    return f"${whole}"


@register.filter
def number(value) -> str:
    """An integer with thousands separators; large values in a short form ("1.2 M")."""
    if value in (None, ""):
        return EMPTY
    value = float(value)
    if abs(value) >= 10_000_000:
        return f"{value / 1_000_000:.1f} M"
    if value.is_integer():
        return intcomma(int(value))
    return intcomma(f"{value:.2f}")


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
def status_class(status: str) -> str:
    """CSS class of a status badge."""
    return f"badge badge-{status}" if status else "badge"
