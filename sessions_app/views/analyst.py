"""Small endpoints of the analyst features: filter autocomplete (HTMX fills a <datalist>)."""

from django.http import Http404
from django.shortcuts import render

from sessions_app import explore
from sessions_app.views.common import dashboard_view

SUGGEST_KINDS = ("user", "tag", "asset")


@dashboard_view()
def suggest(request, kind: str):
    """<option>s of known users, tags or assets starting with the typed text (any case)."""
    if kind not in SUGGEST_KINDS:
        raise Http404("No such suggestion list.")
    # ?q=, or the filter input's own name when HTMX sends the field itself (?tag=ear).
    values = explore.suggest(kind, request.GET.get("q") or request.GET.get(kind, ""))
    response = render(request, "partials/suggestions.html", {"values": values})
    response["Cache-Control"] = "private, max-age=30"
    return response
