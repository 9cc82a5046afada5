"""REST API v1 (django-ninja): thin views over `sessions_app.store` and the analytics selectors.

Read operations need a key with the `read` scope, writes one with `write`. Every error has the
shape in `errors.py`.
"""

from ninja import Header, NinjaAPI, Query, Status

from sessions_app import validation as v
from sessions_app.api import errors
from sessions_app.api.auth import READ, WRITE
from sessions_app.api.schemas import (
    EndIn,
    EntryIn,
    EntryOut,
    ErrorOut,
    EventCreatedOut,
    ExtendIn,
    ExtendOut,
    MessageIn,
    QueryIn,
    SessionCreateIn,
    SessionDetailOut,
    SessionId,
    SessionOut,
    SessionPageOut,
    SessionTypeName,
    StatsOut,
    TimelinePageOut,
    ToolCallIn,
    UserSummaryOut,
    session_out,
)
from sessions_app.domain import QueryRecord
from sessions_app.exceptions import SessionNotFound
from sessions_app.store import get_session_store

DESCRIPTION = """
Record analysis sessions from client applications: create a session, track its queries,
messages and tool calls, keep context, extend, end, read back, and query analytics.

**Auth**: `Authorization: Bearer <API key>`. Keys are created in the admin and carry scopes:
`read` for GET operations, `write` for everything that changes a session.

**Errors** always look like `{"error": {"code": "...", "field": "...", "reason": "..."}}`:
400 malformed JSON, 401 missing or invalid key, 403 missing scope, 404 unknown session,
409 session not active (ended, expired, archived) or query limit reached, 413 body too large,
422 invalid input (`field` names it), 429 too many invalid keys from one address,
503 live store or database unavailable.
A rejected request changes nothing.
"""


class _Api(NinjaAPI):
    def get_openapi_operation_id(self, operation) -> str:
        # "create_session" rather than ninja's "sessions_app_api_endpoints_create_session".
        return operation.view_func.__name__


api = _Api(
    title="FIML Sessions API",
    version="1.0.0",
    description=DESCRIPTION,
    urls_namespace="api-v1",
    auth=READ,
    parser=errors.StrictJSONParser(),
)
errors.install(api)

# Errors each kind of operation can answer with (documented so clients and schemathesis know).
_READ_ERRORS = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    422: ErrorOut,
    429: ErrorOut,
    503: ErrorOut,
}
_SESSION_READ_ERRORS = {**_READ_ERRORS, 404: ErrorOut}
_WRITE_ERRORS = {**_SESSION_READ_ERRORS, 409: ErrorOut, 413: ErrorOut}


@api.post(
    "/sessions",
    auth=WRITE,
    response={201: SessionOut, **_WRITE_ERRORS},
    tags=["sessions"],
    summary="Create a session",
)
def create_session(
    request,
    payload: SessionCreateIn,
    idempotency_key: str | None = Header(
        None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=v.MAX_NAME_LENGTH,
        pattern=r"^[\x21-\x7e]+$",
        description="Retrying with the same key within 24 h returns the same session.",
    ),
):
    """Start a live session. Send `Idempotency-Key` so a retried request cannot create two."""
    session = get_session_store().create_session(
        **payload.model_dump(), idempotency_key=idempotency_key
    )
    return Status(201, session_out(session))


@api.get(
    "/sessions",
    response={200: SessionPageOut, **_READ_ERRORS},
    tags=["sessions"],
    summary="List a user's sessions",
)
def list_sessions(
    request,
    user_id: str = Query(..., min_length=1, max_length=v.MAX_USER_ID_LENGTH),
    include_archived: bool = Query(False, description="Also list ended and expired sessions."),
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, max_length=200, description="`next_cursor` of a page."),
):
    """A user's sessions, newest first; follow `next_cursor` for more."""
    page = get_session_store().list_user_sessions(
        user_id, include_archived=include_archived, limit=limit, cursor=cursor or None
    )
    return {"items": page.items, "next_cursor": page.next_cursor}


@api.get(
    "/sessions/{session_id}",
    response={200: SessionDetailOut, **_SESSION_READ_ERRORS},
    tags=["sessions"],
    summary="Get a session",
)
def get_session(
    request,
    session_id: SessionId,
    recent_events: int = Query(20, ge=0, le=200, description="How many latest events to include."),
):
    """A live or archived session with its state and latest events."""
    session = get_session_store().get_session(session_id, recent_events=recent_events)
    if session is None:
        raise SessionNotFound(session_id)
    return session_out(session, detail=True)


@api.get(
    "/sessions/{session_id}/timeline",
    response={200: TimelinePageOut, **_SESSION_READ_ERRORS},
    tags=["sessions"],
    summary="Page through a session's timeline",
)
def get_timeline(
    request,
    session_id: SessionId,
    offset: int = Query(0, ge=0, le=10_000_000),
    limit: int = Query(50, ge=1, le=500),
):
    """Queries, messages and tool calls in order, `limit` at a time from `offset`."""
    events, total = get_session_store().get_timeline(session_id, offset=offset, limit=limit)
    return {"items": events, "total": total, "offset": offset, "limit": limit}


@api.delete(
    "/sessions/{session_id}",
    auth=WRITE,
    response={204: None, **_SESSION_READ_ERRORS},
    tags=["sessions"],
    summary="Delete a session",
)
def delete_session(request, session_id: SessionId):
    """Delete a session, live or archived, with its whole timeline."""
    if not get_session_store().delete_session(session_id):
        raise SessionNotFound(session_id)
    return Status(204, None)


@api.post(
    "/sessions/{session_id}/queries",
    auth=WRITE,
    response={201: EventCreatedOut, **_WRITE_ERRORS},
    tags=["tracking"],
    summary="Track a query",
)
def track_query(request, session_id: SessionId, payload: QueryIn):
    """Append a query; 409 once the session holds its policy's maximum number of queries."""
    seq = get_session_store().add_query(session_id, QueryRecord(**payload.model_dump()))
    return Status(201, {"session_id": session_id, "seq": seq})


@api.post(
    "/sessions/{session_id}/messages",
    auth=WRITE,
    response={201: EventCreatedOut, **_WRITE_ERRORS},
    tags=["tracking"],
    summary="Add a message",
)
def add_message(request, session_id: SessionId, payload: MessageIn):
    """Append a conversation message (user, assistant, tool or system)."""
    seq = get_session_store().add_message(session_id, **payload.model_dump())
    return Status(201, {"session_id": session_id, "seq": seq})


@api.post(
    "/sessions/{session_id}/tool-calls",
    auth=WRITE,
    response={201: EventCreatedOut, **_WRITE_ERRORS},
    tags=["tracking"],
    summary="Record a tool call",
)
def record_tool_call(request, session_id: SessionId, payload: ToolCallIn):
    """Append a tool call with its duration, tokens and cost."""
    seq = get_session_store().record_tool_call(session_id, **payload.model_dump())
    return Status(201, {"session_id": session_id, "seq": seq})


@api.put(
    "/sessions/{session_id}/context",
    auth=WRITE,
    response={200: EntryOut, **_WRITE_ERRORS},
    tags=["tracking"],
    summary="Set a context key",
)
def update_context(request, session_id: SessionId, payload: EntryIn):
    """Set one context key to a JSON value; other keys are left as they are."""
    get_session_store().update_context(session_id, payload.key, payload.value)
    return {"session_id": session_id, "key": payload.key.strip()}


@api.put(
    "/sessions/{session_id}/results",
    auth=WRITE,
    response={200: EntryOut, **_WRITE_ERRORS},
    tags=["tracking"],
    summary="Store an intermediate result",
)
def store_result(request, session_id: SessionId, payload: EntryIn):
    """Set one intermediate result to a JSON value."""
    get_session_store().store_intermediate_result(session_id, payload.key, payload.value)
    return {"session_id": session_id, "key": payload.key.strip()}


@api.post(
    "/sessions/{session_id}/extend",
    auth=WRITE,
    response={200: ExtendOut, **_WRITE_ERRORS},
    tags=["lifecycle"],
    summary="Extend a session",
)
def extend_session(request, session_id: SessionId, payload: ExtendIn):
    """Push the expiry back by `hours`, up to the type's max TTL (422 past it)."""
    expires_at = get_session_store().extend_session(session_id, hours=payload.hours)
    return {"session_id": session_id, "expires_at": expires_at}


@api.post(
    "/sessions/{session_id}/end",
    auth=WRITE,
    response={200: SessionOut, **_WRITE_ERRORS},
    tags=["lifecycle"],
    summary="End a session",
)
def end_session(request, session_id: SessionId, payload: EndIn):
    """End a live session as completed, failed or abandoned; it is archived right away."""
    session = get_session_store().end_session(session_id, status=payload.status)
    return session_out(session)


@api.get(
    "/stats",
    response={200: StatsOut, **_READ_ERRORS},
    tags=["analytics"],
    summary="Session statistics",
)
def session_stats(
    request,
    user_id: str | None = Query(None, min_length=1, max_length=v.MAX_USER_ID_LENGTH),
    session_type: SessionTypeName | None = Query(None, description="Only this type."),  # noqa: B008
    days: int = Query(30, ge=1, le=365),
):
    """Counts, durations, queries and top assets over the last `days`, optionally filtered."""
    from sessions_app.analytics import get_session_stats

    return get_session_stats(user_id=user_id, session_type=session_type, days=days)


@api.get(
    "/user-summary",
    response={200: UserSummaryOut, **_READ_ERRORS},
    tags=["analytics"],
    summary="A user's summary",
)
def user_summary(
    request,
    user_id: str = Query(..., min_length=1, max_length=v.MAX_USER_ID_LENGTH),
    days: int = Query(30, ge=1, le=365),
):
    """What one user did over the last `days`: sessions, types, assets, queries."""
    from sessions_app.analytics import get_user_session_summary

    return get_user_session_summary(user_id, days)
