"""History browser: filtered, sorted, keyset-paginated archived sessions and their export."""

import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone

from sessions_app import csvsafe, history
from sessions_app.forms import HistoryFilterForm, error_list
from sessions_app.views.common import EXPORT, dashboard_view, render_page

COLUMNS = [
    # (sort key or None, header)
    (None, "Session"),
    (None, "User"),
    (None, "Type"),
    (None, "Status"),
    ("created", "Started"),
    ("duration", "Duration"),
    ("queries", "Queries"),
    ("errors", "Errors"),
    ("tokens", "Tokens"),
    ("cost", "Cost"),
    (None, "Assets"),
    (None, "Tags"),
]


def _sort_links(current: str) -> list[dict]:
    """Header cells: sortable ones link to their column, flipping direction when already active."""
    name, descending = history.parse_sort(current)
    cells = []
    for key, label in COLUMNS:
        cell = {"label": label, "key": key, "sort": None, "active": None}
        if key:
            if key == name:
                cell["active"] = "desc" if descending else "asc"
                cell["sort"] = key if descending else f"-{key}"
            else:
                cell["sort"] = f"-{key}"
        cells.append(cell)
    return cells


@dashboard_view()
def history_page(request):
    """History page; an HTMX filter or page change gets just the results partial."""
    form = HistoryFilterForm(request.GET)
    context = {"active_nav": "history", "form": form}
    if not form.is_valid():
        context["errors"] = error_list(form)
        return render_page(
            request, "dashboard/history.html", "partials/history_results.html", context, 400
        )
    filters = form.filters()
    sort = form.sort_value
    page = history.search_sessions(
        filters, sort, form.cleaned_data.get("cursor") or None, form.cleaned_data["per_page"]
    )
    context.update(
        page=page,
        count=page.count,
        count_exact=page.count_exact,
        columns=_sort_links(sort),
        sort=sort,
        filtered=not filters.is_empty,
    )
    return render_page(request, "dashboard/history.html", "partials/history_results.html", context)


def _plain(value):
    if isinstance(value, datetime):
        return timezone.localtime(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    return value


class _Echo:
    """A file-like object whose write() hands the line back, for csv.writer streaming."""

    def write(self, value: str) -> str:
        return value


def _csv_stream(rows: Iterator[dict]) -> Iterator[str]:
    writer = csvsafe.writer(_Echo())
    yield writer.writerow(history.EXPORT_FIELDS)
    for row in rows:
        yield writer.writerow(
            [" ".join(v) if isinstance(v, list) else _plain(v) for v in row.values()]
        )


def _json_stream(rows: Iterator[dict]) -> Iterator[str]:
    yield "["
    separator = "\n"
    for row in rows:
        yield separator + json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False)
        separator = ",\n"
    yield "\n]\n"


@dashboard_view(EXPORT)
def history_export(request, fmt: str):
    """Every session matching the history filters, streamed as CSV or JSON (any size)."""
    form = HistoryFilterForm(request.GET)
    if not form.is_valid():
        return HttpResponse("\n".join(error_list(form)), status=400, content_type="text/plain")
    rows = history.export_rows(form.filters(), form.sort_value)
    if fmt == "csv":
        response = StreamingHttpResponse(_csv_stream(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(
            _json_stream(rows), content_type="application/json; charset=utf-8"
        )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="sessions-{stamp}.{fmt}"'
    return response
