"""Saved views: a user's named filters of History or the Overview (services and selectors).

A view keeps only the query parameters its page understands, checked by that page's own filter
form, so a saved view always opens without an error.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from django.db import IntegrityError, transaction
from django.forms import Form
from django.urls import reverse

from sessions_app import validation
from sessions_app.exceptions import InvalidInput
from sessions_app.forms import HistoryFilterForm, OverviewFilterForm, error_list
from sessions_app.models import SavedView

# Page -> (its filter form, the URL name it opens, parameters never saved: positions in a list).
PAGES: dict[str, tuple[type[Form], str, set[str]]] = {
    SavedView.Page.HISTORY: (HistoryFilterForm, "dashboard:history", {"cursor"}),
    SavedView.Page.OVERVIEW: (OverviewFilterForm, "dashboard:overview", set()),
}
MAX_VIEWS_PER_USER = 200
NAME_MAX = validation._max_length(SavedView, "name")
QUERY_MAX = validation._max_length(SavedView, "query")


def clean_query(page: str, raw: str) -> str:
    """The filters of `raw` (a query string, "?" optional) that `page` understands, in a stable
    order; InvalidInput naming the field when a filter is not valid there."""
    if page not in PAGES:
        raise InvalidInput("page", f"must be one of {', '.join(PAGES)}")
    form_class, _, skipped = PAGES[page]
    allowed = set(form_class.base_fields) - skipped
    pairs = [(k, v) for k, v in parse_qsl(raw.lstrip("?"), keep_blank_values=False) if k in allowed]
    form = form_class(dict(pairs))
    if not form.is_valid():
        raise InvalidInput("query", "; ".join(error_list(form)))
    query = urlencode(sorted(pairs))
    if len(query) > QUERY_MAX:
        raise InvalidInput("query", f"the filters must fit in {QUERY_MAX} characters")
    return query


def clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise InvalidInput("name", "give the view a name")
    if len(name) > NAME_MAX:
        raise InvalidInput("name", f"must be at most {NAME_MAX} characters")
    return name


def views_of(user, page: str | None = None) -> list[SavedView]:
    """The user's views (of one page, when given), by page then name."""
    query = SavedView.objects.filter(owner=user)
    if page:
        query = query.filter(page=page)
    return list(query)


def url_of(view: SavedView) -> str:
    """The page with the view's filters applied."""
    path = reverse(PAGES[view.page][1])
    return f"{path}?{view.query}" if view.query else path


def _save(view: SavedView) -> SavedView:
    try:
        with transaction.atomic():
            view.save()
    except IntegrityError:
        message = f"you already have a {view.page} view named “{view.name}”"
        raise InvalidInput("name", message) from None
    return view


def create_view(user, name: str, page: str, query: str) -> SavedView:
    """Save the user's current filters of `page` under `name`."""
    view = SavedView(owner=user, name=clean_name(name), page=page, query=clean_query(page, query))
    if SavedView.objects.filter(owner=user).count() >= MAX_VIEWS_PER_USER:
        raise InvalidInput("name", f"you can keep at most {MAX_VIEWS_PER_USER} views")
    return _save(view)


def update_view(view: SavedView, name: str, query: str | None = None) -> SavedView:
    """Rename a view and, when `query` is given, replace its filters."""
    view.name = clean_name(name)
    if query is not None:
        view.query = clean_query(view.page, query)
    return _save(view)
