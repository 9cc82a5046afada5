"""Live sessions from Redis, most recent activity first, refreshed by HTMX polling."""

from sessions_app.exceptions import StoreUnavailable
from sessions_app.models import SessionType
from sessions_app.store import get_session_store
from sessions_app.views.common import dashboard_view, render_page

LIVE_LIMIT = 100


def live_context() -> dict:
    """Live sessions and counts; `live_available` False (and nothing else) when Redis is down."""
    store = get_session_store()
    try:
        sessions = store.list_live_sessions(limit=LIVE_LIMIT)
        counts = store.live_counts()
    except StoreUnavailable:
        return {"live_available": False, "sessions": [], "counts": None}
    by_type = [(label, counts["by_type"].get(value, 0)) for value, label in SessionType.choices]
    return {
        "live_available": True,
        "sessions": sessions,
        "counts": {"total": counts["total"], "by_type": by_type},
        "limit": LIVE_LIMIT,
    }


@dashboard_view()
def live(request):
    """The live page; its partial polls this view every few seconds."""
    context = {"active_nav": "live", **live_context()}
    return render_page(request, "dashboard/live.html", "partials/live_body.html", context)
