"""Session detail (live or archived) with its timeline, and the actions staff may take on it."""

from typing import overload

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from sessions_app import audit, history, trace, validation
from sessions_app.exceptions import SessionNotFound, StoreError, StoreUnavailable
from sessions_app.forms import EndForm, ExtendForm, ExtendLimit, error_list
from sessions_app.policies import get_effective_policy
from sessions_app.store import get_session_store
from sessions_app.views.common import MANAGE, dashboard_view, render_page


def _load(session_id: str):
    """(session, live_unavailable): the live or archived session; if Redis is down, archived."""
    store = get_session_store()
    try:
        return store.get_session(session_id, recent_events=0), False
    except StoreUnavailable:
        # Redis is down: the archived copy (if any) is still worth showing.
        return store.get_archived_session(session_id, 0), True


def _fetcher(session_id: str, live_unavailable: bool) -> trace.Fetch:
    """get_timeline(offset, limit) for this session, live or archived, whatever Redis does."""

    def fetch(offset: int, limit: int):
        if live_unavailable:
            return history.archived_timeline(session_id, offset, limit)
        try:
            return get_session_store().get_timeline(session_id, offset=offset, limit=limit)
        except SessionNotFound:
            # Archived or deleted between the two reads, or live with nothing recorded yet.
            return history.archived_timeline(session_id, offset, limit)

    return fetch


@overload
def _int_param(request, name: str, default: int) -> int: ...
@overload
def _int_param(request, name: str, default: None = None) -> int | None: ...


def _int_param(request, name: str, default: int | None = None) -> int | None:
    """A non-negative integer query parameter; anything else is the default."""
    try:
        value = int(request.GET[name])
    except (KeyError, ValueError):
        return default
    # Clamped: a crafted 99999999999999999999 must not reach Redis or SQL as an offset.
    return min(max(value, 0), validation.MAX_EVENTS_PER_SESSION)


@dashboard_view()
def session_detail(request, session_id: str):
    """Metadata, counters, the trace (paged as it scrolls), context and intermediate results.

    An HTMX request with `offset` gets the next page of trace items only; `upto=SEQ` extends
    the page to that event (the error links and "jump to next error" use it).
    """
    session, live_unavailable = _load(session_id)
    if session is None and live_unavailable:
        # Not archived, and Redis cannot say whether it is live: not a 404.
        response = render(
            request,
            "errors/live_unavailable.html",
            {"session_id": session_id, "active_nav": "live"},
            status=503,
        )
        response["Retry-After"] = "30"
        return response
    if session is None:
        raise Http404("No live or archived session has this id.")
    offset = _int_param(request, "offset", 0)
    upto = _int_param(request, "upto")
    turn = _int_param(request, "turn")
    fetch = _fetcher(session.id, live_unavailable)
    page = trace.trace_page(fetch, session, offset=offset, upto=upto, turn=turn)
    context = {
        # A live session is reached from the Live page, an archived one from History.
        "active_nav": "live" if session.is_live else "history",
        "session": session,
        "live_unavailable": live_unavailable,
        "trace": page,
        "event_total": page.total,
        "can_manage": request.user.has_perm(MANAGE),
        "extend_limit": _extend_limit(session) if session.is_live else None,
        "end_form": EndForm(),
    }
    return render_page(
        request, "dashboard/session_detail.html", "partials/trace_items.html", context
    )


def _extend_limit(session) -> ExtendLimit:
    return ExtendLimit(session, get_effective_policy(session.session_type).max_ttl_hours)


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
    session, _ = _load(session_id)
    limit = _extend_limit(session) if session is not None and session.is_live else None
    form = ExtendForm(request.POST, limit=limit)
    if not form.is_valid():
        messages.error(request, "Could not extend the session: " + "; ".join(error_list(form)))
        return _back(session_id)
    hours = form.cleaned_data["hours"]
    store = get_session_store()
    expires_at = _run(request, "extend", lambda: store.extend_session(session_id, hours=hours))
    if expires_at is not None:
        messages.success(request, f"Extended the session by {hours:g} hours.")
        audit.record_sessions("extend", [session_id], actor=request, hours=hours)
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
        audit.record_sessions("end", [session_id], actor=request, status=status)
    return _back(session_id)


@dashboard_view(MANAGE)
@require_POST
def session_archive(request, session_id: str):
    store = get_session_store()
    archived = _run(request, "archive", lambda: store.archive_session(session_id))
    if archived:
        messages.success(request, "Archived the session.")
        audit.record_sessions("archive", [session_id], actor=request)
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
        audit.record_sessions("delete_session", [session_id], actor=request)
    else:
        messages.info(request, f"Session {session_id} was already gone.")
    return redirect("dashboard:history")
