"""Per-user pages: a lookup form and one user's summary, live sessions and history."""

from collections import Counter

from django.shortcuts import redirect, render

from sessions_app import analytics, history
from sessions_app.exceptions import InvalidInput, StoreUnavailable
from sessions_app.forms import UserLookupForm
from sessions_app.store import get_session_store
from sessions_app.views.common import dashboard_view, render_page

USER_PAGE = 25


ACTIVE_SAMPLE = 200


def active_users() -> list[tuple[str, int]] | None:
    """Users with live sessions now (among the most recently active ones), busiest first."""
    try:
        sessions = get_session_store().list_live_sessions(limit=ACTIVE_SAMPLE)
    except StoreUnavailable:
        return None
    counts = Counter(s.user_id for s in sessions if s.user_id)
    return counts.most_common(20)


@dashboard_view()
def user_lookup(request):
    """Find a user by id (GET ?user=...), then go to their page; lists users active now."""
    form = UserLookupForm(request.GET or None)
    if form.is_bound and form.is_valid():
        return redirect("dashboard:user", user_id=form.cleaned_data["user"])
    context = {"form": form, "active_nav": "users", "active_users": active_users()}
    status = 400 if form.is_bound else 200
    return render(request, "dashboard/user_lookup.html", context, status=status)


@dashboard_view()
def user_detail(request, user_id: str):
    """One user's stats over 30 days, their live sessions and their latest archived sessions."""
    # The page shows no query-type breakdown; skipping it spares reading the user's events.
    summary = analytics.get_user_session_summary(user_id, days=30, query_types=False)
    try:
        live = get_session_store().list_user_sessions(user_id, limit=USER_PAGE).items
        live_available = True
    except StoreUnavailable:
        live, live_available = [], False
    filters = history.HistoryFilters(user=user_id)
    cursor = request.GET.get("cursor") or None
    try:
        page = history.search_sessions(filters, history.DEFAULT_SORT, cursor, USER_PAGE)
    except InvalidInput:  # a stale cursor: start again from the newest
        page = history.search_sessions(filters, history.DEFAULT_SORT, None, USER_PAGE)
    context = {
        "active_nav": "users",
        "user_id": user_id,
        "summary": summary,
        "live_sessions": live,
        "live_available": live_available,
        "page": page,
    }
    return render_page(
        request, "dashboard/user_detail.html", "partials/user_sessions.html", context
    )
