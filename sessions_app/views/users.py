"""Users: a sortable, searchable list of users with their totals, and one user's page."""

from collections import Counter

from django.http import Http404
from django.shortcuts import redirect

from sessions_app import analytics, explore, history, validation
from sessions_app.exceptions import InvalidInput, StoreUnavailable
from sessions_app.forms import UsersListForm, error_list
from sessions_app.store import get_session_store
from sessions_app.templatetags.dashboard import user_path
from sessions_app.views.common import dashboard_view, render_page

USER_PAGE = 25
ACTIVE_SAMPLE = 200

# (sort key, header, numeric) of the users list's columns.
USER_COLUMNS = [
    ("user", "User", False),
    ("sessions", "Sessions", True),
    ("queries", "Queries", True),
    ("errors", "Errors", True),
    ("tokens", "Tokens", True),
    ("cost", "Cost", True),
    ("last_active", "Last active", False),
]


def active_users() -> list[tuple[str, int]] | None:
    """Users with live sessions now (among the most recently active ones), busiest first."""
    try:
        sessions = get_session_store().list_live_sessions(limit=ACTIVE_SAMPLE)
    except StoreUnavailable:
        return None
    counts = Counter(s.user_id for s in sessions if s.user_id)
    return counts.most_common(20)


def _user_columns(sort: str) -> list[dict]:
    """Header cells linking to their sort, flipping the direction of the active one."""
    name, descending = explore.parse_user_sort(sort)
    cells = []
    for key, label, numeric in USER_COLUMNS:
        active = ("desc" if descending else "asc") if key == name else None
        flip = key if (active == "desc") else f"-{key}"
        if key == "user" and active is None:
            flip = "user"  # names read A to Z first
        cells.append({"key": key, "label": label, "num": numeric, "active": active, "sort": flip})
    return cells


@dashboard_view()
def user_lookup(request):
    """The users list: search as you type, sort by any column, pages. `?user=ID` opens a user."""
    user_id = request.GET.get("user", "").strip()
    if user_id:
        if user_id in (".", ".."):  # no URL path can carry a lone dot segment: answer here
            return user_detail(request, user_id)
        return redirect(user_path(user_id))
    form = UsersListForm(request.GET)
    context = {"active_nav": "users", "form": form}
    if not form.is_valid():
        context["errors"] = error_list(form)
        return render_page(
            request, "dashboard/users.html", "partials/users_list.html", context, 400
        )
    data = form.cleaned_data
    users = explore.list_users(
        search=data["q"],
        sort=data.get("sort") or explore.DEFAULT_USER_SORT,
        page=data.get("page") or 1,
        days=data["days"],
    )
    context.update(users=users, columns=_user_columns(users.sort))
    if not users.rows and users.search:
        context["suggestions"] = explore.user_suggestions(users.search)
    if not request.htmx:
        context["active_users"] = active_users()
    return render_page(request, "dashboard/users.html", "partials/users_list.html", context)


@dashboard_view()
def user_detail(request, user_id: str):
    """One user's stats over 30 days, their live sessions and their latest archived sessions;
    an id nobody used gets a "no such user" page with the closest known ids."""
    try:
        user_id = validation.user_id(user_id)
    except InvalidInput as error:
        raise Http404(f"No such user: the user id {error.reason}.") from None
    # From the user's rollup rows (at most one per day and type); no query-type breakdown shown.
    summary = analytics.get_user_session_summary(user_id, days=30, query_types=False)
    try:
        live = get_session_store().list_user_sessions(user_id, limit=USER_PAGE).items
        live_available = True
    except StoreUnavailable:
        live, live_available = [], False
    filters = history.HistoryFilters(user=user_id, exact_user=True)
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
    if not page.rows and not live and not cursor and live_available:
        context["suggestions"] = explore.user_suggestions(user_id)
        return render_page(
            request, "dashboard/user_unknown.html", "dashboard/user_unknown.html", context, 404
        )
    return render_page(
        request, "dashboard/user_detail.html", "partials/user_sessions.html", context
    )
