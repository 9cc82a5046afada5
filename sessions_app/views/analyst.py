"""Small endpoints of the analyst features: filter autocomplete and saved views."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from sessions_app import explore
from sessions_app import saved_views as saved
from sessions_app.exceptions import InvalidInput
from sessions_app.models import SavedView
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


# ---- saved views ------------------------------------------------------------------------------


def _next_url(request, default: str) -> str:
    """Where to go after a post: the page it came from when that is on this site."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


@dashboard_view()
def saved_views(request):
    """GET: the user's saved views (rename, delete, share). POST: save the current filters."""
    if request.method == "POST":
        page = request.POST.get("page", "")
        try:
            view = saved.create_view(
                request.user, request.POST.get("name", ""), page, request.POST.get("query", "")
            )
        except InvalidInput as error:
            messages.error(request, f"Could not save the view: {error}")
            return redirect(_next_url(request, reverse("dashboard:saved_views")))
        messages.success(request, f"Saved the view “{view.name}”.")
        return redirect(saved.url_of(view))
    views = saved.views_of(request.user)
    for view in views:
        view.open_url = saved.url_of(view)
        view.share_url = request.build_absolute_uri(reverse("dashboard:saved_view", args=[view.pk]))
    context = {"active_nav": "", "views": views}
    return render(request, "dashboard/saved_views.html", context)


@dashboard_view()
def saved_view(request, pk: int):
    """Open a saved view: its page with its filters. Anyone with the dashboard may open a
    shared view's link; only its owner may change it."""
    view = get_object_or_404(SavedView, pk=pk)
    return redirect(saved.url_of(view))


@dashboard_view()
@require_POST
def saved_view_edit(request, pk: int):
    """Rename a view; with `query`, also replace its filters with the ones posted."""
    view = get_object_or_404(SavedView, pk=pk, owner=request.user)
    query = request.POST.get("query")
    try:
        saved.update_view(view, request.POST.get("name", ""), query)
    except InvalidInput as error:
        messages.error(request, f"Could not change the view: {error}")
    else:
        messages.success(request, f"Updated the view “{view.name}”.")
    return redirect(_next_url(request, reverse("dashboard:saved_views")))


@dashboard_view()
@require_POST
def saved_view_delete(request, pk: int):
    view = get_object_or_404(SavedView, pk=pk, owner=request.user)
    view.delete()
    messages.success(request, f"Deleted the view “{view.name}”.")
    return redirect(_next_url(request, reverse("dashboard:saved_views")))
