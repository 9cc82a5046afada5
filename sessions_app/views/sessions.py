"""Session detail (live or archived) with its timeline, and the actions staff may take on it."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from sessions_app import history
from sessions_app.exceptions import SessionNotFound, StoreError, StoreUnavailable
from sessions_app.forms import EndForm, ExtendForm, error_list
from sessions_app.store import get_session_store
from sessions_app.views.common import MANAGE, dashboard_view, render_page

TIMELINE_PAGE = 50


def _load(session_id: str):
    """(session, live_unavailable): the live or archived session; if Redis is down, archived."""
    store = get_session_store()
    try:
        return store.get_session(session_id, recent_events=0), False
    except StoreUnavailable:
        # Redis is down: the archived copy (if any) is still worth showing.
        return store.get_archived_session(session_id, 0), True


def _timeline(session_id: str, page: int, live_unavailable: bool):
    offset = (page - 1) * TIMELINE_PAGE
    if live_unavailable:
        return history.archived_timeline(session_id, offset, TIMELINE_PAGE)
    try:
        return get_session_store().get_timeline(session_id, offset=offset, limit=TIMELINE_PAGE)
    except SessionNotFound:
        # Archived or deleted between the two reads, or live with nothing recorded yet.
        return history.archived_timeline(session_id, offset, TIMELINE_PAGE)


def _page_number(request) -> int:
    try:
        return max(int(request.GET.get("page", "1")), 1)
    except ValueError:
        return 1


@dashboard_view()
def session_detail(request, session_id: str):
    """Metadata, counters, timeline page, context and intermediate results of one session."""
    session, live_unavailable = _load(session_id)
    if session is None:
        raise Http404("No live or archived session has this id.")
    page = _page_number(request)
    events, total = _timeline(session_id, page, live_unavailable)
    pages = max((total + TIMELINE_PAGE - 1) // TIMELINE_PAGE, 1)
    context = {
        "active_nav": "history",
        "session": session,
        "live_unavailable": live_unavailable,
        "events": events,
        "event_total": total,
        "page": page,
        "pages": pages,
        "first_seq": (page - 1) * TIMELINE_PAGE,
        "can_manage": request.user.has_perm(MANAGE),
        "extend_form": ExtendForm(),
        "end_form": EndForm(),
    }
    return render_page(request, "dashboard/session_detail.html", "partials/timeline.html", context)


def _back(session_id: str):
    return redirect(reverse("dashboard:session", args=[session_id]))


def _run(request, verb: str, action):
    """Run a store action; a store error becomes a message naming what failed. None on error."""
    try:
        return action()
    except StoreError as error:
        messages.error(request, f"Could not {verb} the session: {error}")
        return None


@dashboard_view(MANAGE)
@require_POST
def session_extend(request, session_id: str):
    form = ExtendForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Could not extend the session: " + "; ".join(error_list(form)))
        return _back(session_id)
    hours = form.cleaned_data["hours"]
    store = get_session_store()
    expires_at = _run(request, "extend", lambda: store.extend_session(session_id, hours=hours))
    if expires_at is not None:
        messages.success(request, f"Extended the session by {hours:g} hours.")
    return _back(session_id)


@dashboard_view(MANAGE)
@require_POST
def session_end(request, session_id: str):
    form = EndForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Could not end the session: " + "; ".join(error_list(form)))
        return _back(session_id)
    status = form.cleaned_data["status"]
    store = get_session_store()
    if _run(request, "end", lambda: store.end_session(session_id, status=status)) is not None:
        messages.success(request, f"Ended the session as {status}.")
    return _back(session_id)


@dashboard_view(MANAGE)
@require_POST
def session_archive(request, session_id: str):
    store = get_session_store()
    archived = _run(request, "archive", lambda: store.archive_session(session_id))
    if archived:
        messages.success(request, "Archived the session.")
    elif archived is False:
        messages.info(request, "Nothing to archive: the session is not live.")
    return _back(session_id)


@dashboard_view(MANAGE)
def session_delete(request, session_id: str):
    """GET: a confirmation page (works without JavaScript). POST: delete, back to the history."""
    if request.method != "POST":
        session, _ = _load(session_id)
        if session is None:
            raise Http404("No live or archived session has this id.")
        return render(
            request, "dashboard/session_delete.html", {"session": session, "active_nav": "history"}
        )
    store = get_session_store()
    deleted = _run(request, "delete", lambda: store.delete_session(session_id))
    if deleted is None:
        return _back(session_id)
    if deleted:
        messages.success(request, f"Deleted session {session_id}.")
    else:
        messages.info(request, f"Session {session_id} was already gone.")
    return redirect("dashboard:history")
