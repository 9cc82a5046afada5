"""Template helpers of the analyst pages: trace times, offsets, bar geometry, deltas, saved views.

Number and time formats shared by every page live in `dashboard.py`; these are specific to the
trace view, the period comparison and the users list.
"""

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html

from sessions_app import trace

register = template.Library()


@register.simple_tag
def abs_time(moment: datetime | None, with_date: bool = False):
    """<time> with the local clock time to the millisecond (date and zone on hover)."""
    if moment is None:
        return "\u2014"
    local = timezone.localtime(moment)
    text = local.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S.") + (
        "" if with_date else f"{local.microsecond // 1000:03d}"
    )
    exact = local.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + local.strftime(" %Z")
    return format_html('<time datetime="{}" title="{}">{}</time>', local.isoformat(), exact, text)


@register.filter
def offset(seconds) -> str:
    """Seconds since the session start as "+1:05.300"."""
    return trace.offset_text(float(seconds or 0))


@register.filter
def axis_label(seconds) -> str:
    return trace.axis_label(float(seconds or 0))


@register.filter
def svgnum(value) -> str:
    """A number for an SVG attribute: always a dot decimal, whatever the locale."""
    return f"{float(value or 0):.2f}"


@register.simple_tag
def delta(change: dict | None, kind: str = "pct"):
    """A KPI's change against the previous period: "▲ 12.5 %" (or percentage points for rates).

    `change` is {"diff", "pct", "better"} from explore.compare_stats; "better" colours it.
    """
    if not change:
        return format_html('<span class="delta delta-none">{}</span>', "no previous data")
    if kind == "pp":
        value = change["diff"] * 100
        text = f"{abs(value):.1f} pp"
    else:
        if change["pct"] is None:
            return format_html('<span class="delta delta-new">{}</span>', "new")
        value = change["pct"]
        text = f"{abs(value):.1f} %"
    if abs(value) < 0.05:
        arrow, tone = "=", "flat"
    else:
        arrow = "\u25b2" if value > 0 else "\u25bc"
        tone = {True: "good", False: "bad", None: "flat"}[change["better"]]
    return format_html(
        '<span class="delta delta-{}" data-delta="{}">{} {}</span>',
        tone,
        f"{value:.2f}",
        arrow,
        text,
    )


@register.inclusion_tag("partials/saved_views_menu.html", takes_context=True)
def saved_views_menu(context, page: str):
    """The "Views" menu of a page: the user's saved views of it and a form saving the current
    filters (one query)."""
    from sessions_app.saved_views import views_of

    request = context["request"]
    query = request.GET.copy()
    query.pop("cursor", None)
    return {
        "menu_page": page,
        "views": views_of(request.user, page),
        "query": query.urlencode(),
        "csrf_token": context.get("csrf_token"),
        "next": request.get_full_path(),
    }
