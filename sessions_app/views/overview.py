"""Overview: KPI cards and charts for a period and session type."""

from urllib.parse import urlencode

from django.http import HttpResponse
from django.urls import reverse_lazy

from sessions_app import analytics, explore
from sessions_app.exceptions import InvalidInput
from sessions_app.forms import OverviewFilterForm, error_list
from sessions_app.models import SessionStatus, SessionType
from sessions_app.views.common import EXPORT, dashboard_view, render_page

# One colour per session type, query type slot and status, so a series keeps its colour.
TYPE_COLOURS = {
    "equity": "#1f6feb",
    "crypto": "#f59e0b",
    "portfolio": "#10b981",
    "comparative": "#8b5cf6",
    "macro": "#ef4444",
    "agent": "#0ea5e9",
}
PALETTE = ["#1f6feb", "#10b981", "#f59e0b", "#8b5cf6", "#ef4444", "#0ea5e9", "#64748b", "#ec4899"]
STATUS_COLOURS = {
    "active": "#0ea5e9",
    "completed": "#10b981",
    "failed": "#ef4444",
    "abandoned": "#f59e0b",
    "expired": "#94a3b8",
}
TYPE_LABELS = dict(SessionType.choices)


def _stacked_bar(labels, datasets, y_title):
    return {
        "type": "bar",
        "data": {"labels": labels, "datasets": datasets},
        "options": {
            "datasets": {"bar": {"maxBarThickness": 48}},
            "scales": {
                "x": {"stacked": True},
                "y": {
                    "stacked": True,
                    "beginAtZero": True,
                    "title": {"display": True, "text": y_title},
                },
            },
        },
    }


def _horizontal_bar(items, key, colour):
    return {
        "type": "bar",
        "data": {
            "labels": [item[key] for item in items],
            "datasets": [
                {
                    "label": "Sessions",
                    "data": [item["count"] for item in items],
                    "backgroundColor": colour,
                    "maxBarThickness": 22,
                }
            ],
        },
        "options": {"indexAxis": "y", "plugins": {"legend": {"display": False}}},
    }


def _minutes(values: list) -> list:
    return [None if v is None else round(v / 60, 2) for v in values]


def chart_configs(stats: dict, series: dict, previous: dict | None = None) -> dict:
    """Chart.js configurations for every overview chart (drawn by static/js/charts.js), with
    units, drill-down targets and, when `previous` is given, the previous period overlaid."""
    configs = _base_configs(stats, series)
    add_drilldown(configs, stats, series)
    if previous is not None:
        overlay_previous(configs, previous)
    return configs


def _base_configs(stats: dict, series: dict) -> dict:
    labels = series["labels"]
    status_items = [(s, n) for s, n in stats["status_breakdown"].items() if n]
    return {
        "sessions": _stacked_bar(
            labels,
            [
                {"label": TYPE_LABELS[t], "data": data, "backgroundColor": TYPE_COLOURS[t]}
                for t, data in series["sessions_by_type"].items()
            ],
            "sessions",
        ),
        "queries": _stacked_bar(
            labels,
            [
                {"label": name, "data": data, "backgroundColor": PALETTE[i % len(PALETTE)]}
                for i, (name, data) in enumerate(series["queries_by_type"].items())
            ],
            "queries",
        ),
        "duration": {
            "type": "line",
            "data": {
                "labels": labels,
                "datasets": [
                    {
                        "label": "p50",
                        "data": _minutes(series["duration_p50"]),
                        "borderColor": "#1f6feb",
                        "backgroundColor": "#1f6feb",
                        "spanGaps": True,
                        "tension": 0.25,
                    },
                    {
                        "label": "p95",
                        "data": _minutes(series["duration_p95"]),
                        "borderColor": "#ef4444",
                        "backgroundColor": "#ef4444",
                        "spanGaps": True,
                        "tension": 0.25,
                    },
                ],
            },
            "options": {
                "scales": {
                    "y": {"beginAtZero": True, "title": {"display": True, "text": "minutes"}}
                }
            },
        },
        "cache": {
            "type": "line",
            "data": {
                "labels": labels,
                "datasets": [
                    {
                        "label": "Cache hit rate",
                        "data": series["cache_hit_rate"],
                        "borderColor": "#10b981",
                        "backgroundColor": "rgba(16,185,129,.15)",
                        "fill": True,
                        "spanGaps": True,
                        "tension": 0.25,
                    },
                    {
                        "label": "Error rate",
                        "data": series["error_rate"],
                        "borderColor": "#ef4444",
                        "backgroundColor": "#ef4444",
                        "spanGaps": True,
                        "tension": 0.25,
                    },
                ],
            },
            "options": {
                "scales": {"y": {"min": 0, "max": 100, "title": {"display": True, "text": "%"}}}
            },
        },
        "assets": _horizontal_bar(stats["top_assets"], "asset", "#1f6feb"),
        "tags": _horizontal_bar(stats["popular_tags"], "tag", "#8b5cf6"),
        "status": {
            "type": "doughnut",
            "data": {
                "labels": [SessionStatus(s).label for s, _ in status_items],
                "datasets": [
                    {
                        "data": [n for _, n in status_items],
                        "backgroundColor": [STATUS_COLOURS[s] for s, _ in status_items],
                    }
                ],
            },
            "options": {"plugins": {"legend": {"position": "right"}}},
        },
    }


# ---- drill-down, units and the previous period (analyst features) -----------------------------

HISTORY_URL = reverse_lazy("dashboard:history")


def _history_link(**params) -> str:
    return f"{HISTORY_URL}?{urlencode({k: v for k, v in params.items() if v})}"


def add_drilldown(configs: dict, stats: dict, series: dict) -> None:
    """Give each chart a `meta` block charts.js reads: the tooltip unit, whether a stacked bar's
    tooltip shows the day's total, and where a click goes (History filtered to it)."""
    period = stats["period"]
    session_type = stats["session_type"] or ""
    whole = {"start": period["start"], "end": period["end"], "type": session_type}
    types = list(series["sessions_by_type"])
    day = {"kind": "day", "base": str(HISTORY_URL), "type": session_type}
    meta = {
        "sessions": {"unit": "sessions", "total": True, "drill": {**day, "series_types": types}},
        "queries": {"unit": "queries", "total": True, "drill": day},
        "duration": {"unit": "min", "drill": day},
        "cache": {"unit": "%", "drill": day},
        "assets": {"unit": "sessions", "drill": _label_drill("asset", stats["top_assets"], whole)},
        "tags": {"unit": "sessions", "drill": _label_drill("tag", stats["popular_tags"], whole)},
    }
    statuses = [s for s, n in stats["status_breakdown"].items() if n]
    meta["status"] = {
        "unit": "sessions",
        "drill": {
            "kind": "links",
            # Live sessions are not in History: the live page lists them.
            "links": [
                str(reverse_lazy("dashboard:live"))
                if s == "active"
                else _history_link(status=s, **whole)
                for s in statuses
            ],
        },
    }
    for name, block in meta.items():
        configs[name]["meta"] = block


def _label_drill(param: str, items: list[dict], whole: dict) -> dict:
    return {
        "kind": "links",
        "links": [_history_link(**{param: item[param]}, **whole) for item in items],
    }


PREVIOUS_COLOUR = "#64748b"


def overlay_previous(configs: dict, previous: dict) -> None:
    """Draw the previous period's per-day totals over the sessions, queries, duration and
    cache charts, day 1 over day 1 (a dashed grey line; its tooltip names its own date)."""

    def line(label, data, axis_stack=None):
        dataset = {
            "type": "line",
            "label": label,
            "data": data,
            "borderColor": PREVIOUS_COLOUR,
            "backgroundColor": PREVIOUS_COLOUR,
            "borderDash": [6, 4],
            "pointRadius": 2,
            "spanGaps": True,
            "previous": True,
            "order": -1,
        }
        if axis_stack:
            dataset["stack"] = axis_stack  # its own stack: not piled on the bars
        return dataset

    prev_sessions = [
        sum(values) for values in zip(*previous["sessions_by_type"].values(), strict=True)
    ] or [0] * len(previous["labels"])
    prev_queries = [
        sum(values) for values in zip(*previous["queries_by_type"].values(), strict=True)
    ] or [0] * len(previous["labels"])
    configs["sessions"]["data"]["datasets"].append(
        line("Previous period, all types", prev_sessions, "previous")
    )
    configs["queries"]["data"]["datasets"].append(
        line("Previous period, all types", prev_queries, "previous")
    )
    configs["duration"]["data"]["datasets"].append(
        line("Previous period p50", _minutes(previous["duration_p50"]))
    )
    configs["cache"]["data"]["datasets"].append(
        line("Previous period cache hit rate", previous["cache_hit_rate"])
    )
    for name in ("sessions", "queries", "duration", "cache"):
        configs[name]["meta"]["previous_labels"] = previous["labels"]


@dashboard_view()
def overview(request):
    """The overview page; an HTMX filter change gets just the body partial."""
    form = OverviewFilterForm(request.GET or None)
    context = {"active_nav": "overview", "form": form}
    if form.is_bound and not form.is_valid():
        context["errors"] = error_list(form)
        return render_page(
            request, "dashboard/overview.html", "partials/overview_body.html", context, 400
        )
    period = form.period_kwargs()
    session_type = form.session_type()
    stats, series, prev_stats, prev_series = explore.get_overview_comparison(session_type, **period)
    overlay = form.is_bound and form.cleaned_data.get("compare")
    context.update(
        stats=stats,
        previous=prev_stats,
        changes=explore.compare_stats(stats, prev_stats),
        charts=chart_configs(stats, series, prev_series if overlay else None)
        if stats["total_sessions"]
        else None,
        query=request.GET.urlencode(),
    )
    return render_page(request, "dashboard/overview.html", "partials/overview_body.html", context)


@dashboard_view(EXPORT)
def export_metrics(request, fmt: str):
    """The overview's daily metrics as a CSV or JSON download."""
    form = OverviewFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return HttpResponse("\n".join(error_list(form)), status=400, content_type="text/plain")
    try:
        body = analytics.export_session_metrics(fmt, form.session_type(), **form.period_kwargs())
    except InvalidInput as error:
        return HttpResponse(str(error), status=400, content_type="text/plain")
    content_type = "text/csv" if fmt == "csv" else "application/json"
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="session-metrics.{fmt}"'
    return response
