"""REST API v1 (django-ninja): thin views over `sessions_app.store` and the analytics selectors.

Read operations need a key with the `read` scope, writes one with `write`. Every error has the
shape in `errors.py`.
"""

import functools
from datetime import datetime
from typing import Any

from django.http import HttpResponse
from ninja import Header, NinjaAPI, Query, Status

from sessions_app import validation as v
from sessions_app.api import errors
from sessions_app.api.auth import READ, WRITE
from sessions_app.api.ingest import IngestIn, apply_batch, call_store
from sessions_app.api.limits import (
    CURSOR_MAX,
    ISO_TIME_MAX,
    ISO_TIME_PATTERN,
    LIST_DEFAULT,
    LIST_MAX,
    RECENT_EVENTS_MAX,
    TIMELINE_DEFAULT,
    TIMELINE_MAX,
    TIMELINE_OFFSET_MAX,
    iso_time,
)
from sessions_app.api.schemas import (
    EndIn,
    EntryIn,
    EntryOut,
    ErrorOut,
    EventCreatedOut,
    ExtendIn,
    ExtendOut,
    IngestOut,
    MessageIn,
    QueryIn,
    SessionCountersIn,
    SessionCreateIn,
    SessionDetailOut,
    SessionId,
    SessionMetadataIn,
    SessionOut,
    SessionPageOut,
    SessionStatisticsOut,
    SessionTypeName,
    StatsOut,
    StatusName,
    Tag,
    TimelinePageOut,
    ToolCallIn,
    UserSummaryOut,
    session_out,
)
from sessions_app.domain import QueryRecord, SessionPage
from sessions_app.exceptions import InvalidInput, SessionNotFound, StoreUnavailable
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


def _strict_query(run):
    """Wrap an operation's run: a query parameter it does not declare is a 400 naming it."""
    operation = run.__self__
    query_models = [m for m in operation.models if m.__ninja_param_source__ == "query"]
    allowed = frozenset(
        info.alias or name for model in query_models for name, info in model.model_fields.items()
    ) | frozenset(
        name for model in query_models for name in getattr(model, "__ninja_flatten_map__", {})
    )

    lists = frozenset(
        name for model in query_models for name in getattr(model, "__ninja_collection_fields__", ())
    )

    @functools.wraps(run)
    def checked(request, *args, **kwargs):
        refused = errors.unknown_query_parameters(request, allowed, lists)
        return refused or run(request, *args, **kwargs)

    return checked


api.add_decorator(_strict_query, mode="view")

# Query text reaches Postgres, which cannot hold NUL: refused at the door (422), not a 503.
NO_NUL = v.USER_ID_PATTERN  # no NUL: PostgreSQL cannot store it

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
    fields = payload.model_dump()
    if fields["session_id"] is None:  # the store generates one
        del fields["session_id"]
    session = call_store(
        "create_session",
        **fields,
        idempotency_key=idempotency_key,
        idempotency_scope=idempotency_scope(request),
    )
    return Status(201, session_out(session))


def idempotency_scope(request) -> str:
    """Idempotency keys (and batch creates' event ids) are per API key."""
    return f"key:{request.auth.pk}" if getattr(request, "auth", None) is not None else ""


def _list_call(
    *,
    user_id: str | None = None,
    status: str | None = None,
    tags: list[str] | None = None,
    include_archived: bool = False,
    limit: int = LIST_DEFAULT,
    cursor: str | None = None,
    session_type: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> tuple[str, tuple, dict]:
    """(store method, args, kwargs) of a list request: a user's sessions page by cursor; any
    other filter goes through the store's `list_sessions` (live and archived), one page."""
    narrowed = status is not None or tags or session_type or created_from or created_to
    if not narrowed and user_id is not None:
        return (
            "list_user_sessions",
            (user_id,),
            {"include_archived": include_archived, "limit": limit, "cursor": cursor},
        )
    if cursor is not None:
        # Filtered lists are one page (newest first, up to `limit`): say so, naming the field.
        raise InvalidInput(
            "cursor",
            "pages only a user's sessions (user_id without status, tags, session_type or "
            "created_from/created_to); narrow the filters or raise limit instead",
        )
    kwargs: dict[str, Any] = {
        "user_id": user_id,
        "status": status,
        "tags": tags or None,
        "limit": limit,
    }
    # Only the new filters that are set: a store without them still answers the others.
    for name, value in (
        ("session_type", session_type),
        ("created_from", created_from),
        ("created_to", created_to),
    ):
        if value is not None:
            kwargs[name] = value
    return "list_sessions", (), kwargs


def _list_result(method: str, rows, include_archived: bool, status: str | None):
    if method == "list_user_sessions":
        return rows
    if not include_archived and status is None:
        rows = [row for row in rows if row.is_live]
    return SessionPage(items=list(rows), next_cursor=None)


def list_page(**filters):
    """A page of sessions by the given filters (REST `GET /sessions`; MCP uses alist_page)."""
    method, args, kwargs = _list_call(**filters)
    rows = call_store(method, *args, **kwargs)
    return _list_result(method, rows, filters.get("include_archived", False), filters.get("status"))


async def alist_page(**filters):
    """list_page on the async store (MCP list-sessions)."""
    from sessions_app.api.ingest import acall_store

    method, args, kwargs = _list_call(**filters)
    rows = await acall_store(method, *args, **kwargs)
    return _list_result(method, rows, filters.get("include_archived", False), filters.get("status"))


@api.get(
    "/sessions",
    response={200: SessionPageOut, **_READ_ERRORS},
    tags=["sessions"],
    summary="List sessions",
)
def list_sessions(
    request,
    user_id: str | None = Query(
        None, min_length=1, max_length=v.MAX_USER_ID_LENGTH, pattern=NO_NUL
    ),
    status: StatusName | None = Query(None, description="Only this status."),  # noqa: B008
    tags: list[Tag] | None = Query(  # noqa: B008
        None, max_length=v.MAX_TAGS, description="Only sessions carrying all of these tags."
    ),
    include_archived: bool = Query(False, description="Also list ended and expired sessions."),
    limit: int = Query(LIST_DEFAULT, ge=1, le=LIST_MAX),
    cursor: str | None = Query(None, max_length=CURSOR_MAX, description="`next_cursor` of a page."),
    session_type: SessionTypeName | None = Query(None, description="Only this type."),  # noqa: B008
    created_from: str | None = Query(
        None,
        max_length=ISO_TIME_MAX,
        pattern=ISO_TIME_PATTERN,
        description="Only sessions created at or after this time (ISO 8601; UTC if no offset).",
    ),
    created_to: str | None = Query(
        None,
        max_length=ISO_TIME_MAX,
        pattern=ISO_TIME_PATTERN,
        description="Only sessions created before this time (ISO 8601; UTC if no offset).",
    ),
):
    """Sessions newest first: a user's (live, plus archived with `include_archived`, paged by
    `next_cursor`), or by `status`, `tags` (all of them), `session_type` and creation time over
    live and archived sessions (one page; `cursor` with these filters is a 422)."""
    page = list_page(
        user_id=user_id,
        status=status,
        tags=tags,
        include_archived=include_archived,
        limit=limit,
        cursor=cursor or None,
        session_type=session_type,
        created_from=iso_time("created_from", created_from),
        created_to=iso_time("created_to", created_to),
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
    recent_events: int = Query(
        20, ge=0, le=RECENT_EVENTS_MAX, description="How many latest events to include."
    ),
):
    """A live or archived session with its state and latest events."""
    return session_out(read_session(session_id, recent_events), detail=True)


def read_session(session_id: str, recent_events: int):
    """The session, live or archived; archived ones are still read while Redis is down."""
    store = get_session_store()
    try:
        session = store.get_session(session_id, recent_events=recent_events)
    except StoreUnavailable:
        session = store.get_archived_session(session_id, recent_events)
        if session is None:  # it may be live: only Redis can say
            raise
    if session is None:
        raise SessionNotFound(session_id)
    return session


async def aread_session(session_id: str, recent_events: int):
    """read_session on the async store (the MCP server's)."""
    from sessions_app.aio import get_session_store as get_async_store

    store = await get_async_store()
    try:
        session = await store.get_session(session_id, recent_events=recent_events)
    except StoreUnavailable:
        session = await store.get_archived_session(session_id, recent_events)
        if session is None:  # it may be live: only Redis can say
            raise
    if session is None:
        raise SessionNotFound(session_id)
    return session


@api.get(
    "/sessions/{session_id}/timeline",
    response={200: TimelinePageOut, **_SESSION_READ_ERRORS},
    tags=["sessions"],
    summary="Page through a session's timeline",
)
def get_timeline(
    request,
    session_id: SessionId,
    offset: int = Query(0, ge=0, le=TIMELINE_OFFSET_MAX),
    limit: int = Query(TIMELINE_DEFAULT, ge=1, le=TIMELINE_MAX),
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


@api.patch(
    "/sessions/{session_id}",
    auth=WRITE,
    response={200: SessionOut, **_WRITE_ERRORS},
    tags=["sessions"],
    summary="Update purpose, tags or custom metadata",
)
def update_session_metadata(request, session_id: SessionId, payload: SessionMetadataIn):
    """Change a live session's purpose, tags (replaced) or custom metadata (merged by key);
    fields left out stay as they are."""
    fields = payload.model_dump(exclude_none=True)
    if "metadata" in fields:  # the store speaks the seed's name
        fields["custom_metadata"] = fields.pop("metadata")
    call_store("update_session_metadata", session_id, **fields)
    return session_out(read_session(session_id, 0))


@api.post(
    "/sessions/{session_id}/requests",
    auth=WRITE,
    response={200: SessionOut, **_WRITE_ERRORS},
    tags=["tracking"],
    summary="Count a request (AIECS counters)",
)
def record_request(request, session_id: SessionId, payload: SessionCountersIn):
    """Count a request, add its processing time in seconds and mark an error if it failed."""
    call_store("update_session", session_id, **payload.model_dump())
    return session_out(read_session(session_id, 0))


@api.get(
    "/sessions/{session_id}/statistics",
    response={200: SessionStatisticsOut, **_SESSION_READ_ERRORS},
    tags=["sessions"],
    summary="One session's statistics",
)
def session_statistics(request, session_id: SessionId):
    """Tools used, durations, tokens, cost, requests and errors of one session."""
    stats = call_store("get_session_statistics", session_id)
    if stats is None:
        raise SessionNotFound(session_id)
    return stats


@api.get(
    "/stats",
    response={200: StatsOut, **_READ_ERRORS},
    tags=["analytics"],
    summary="Session statistics",
)
def session_stats(
    request,
    user_id: str | None = Query(
        None, min_length=1, max_length=v.MAX_USER_ID_LENGTH, pattern=NO_NUL
    ),
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
    user_id: str = Query(..., min_length=1, max_length=v.MAX_USER_ID_LENGTH, pattern=NO_NUL),
    days: int = Query(30, ge=1, le=365),
):
    """What one user did over the last `days`: sessions, types, assets, queries."""
    from sessions_app.analytics import get_user_session_summary

    return get_user_session_summary(user_id, days)


@api.post(
    "/ingest",
    auth=WRITE,
    response={200: IngestOut, **_WRITE_ERRORS},
    tags=["tracking"],
    summary="Apply a batch of writes",
)
def ingest(request, payload: IngestIn):
    """Writes across any sessions (at most `maxItems` of them), each answered on its own.

    Each operation is `{"op", "session_id", "event_id", <the fields of its single route>}`
    with `op` one of create, query, message, tool_call, context, result, metadata, counters,
    end. An event id is applied once: resending it answers `duplicate`, so retrying a batch
    is safe. A bad operation gets `error` with field and reason; the others still apply.
    A 503 means the batch stopped part way: retry it whole with the same event ids.
    """
    return apply_batch(payload.operations, scope=idempotency_scope(request))


@api.post(
    "/otel/v1/traces",
    auth=WRITE,
    response={200: None, **_WRITE_ERRORS},
    tags=["tracking"],
    summary="OTLP/HTTP trace export",
    # The body is OTLP (protobuf or JSON) as the OpenTelemetry spec defines it, not ours.
    include_in_schema=False,
)
def otlp_traces(request):
    """Record spans sent by an OpenTelemetry SDK (OTEL_EXPORTER_OTLP_ENDPOINT=.../api/v1/otel)."""
    from sessions_app import otel

    content_type = request.content_type or ""
    try:
        export = otel.decode(
            request.body, content_type, request.headers.get("Content-Encoding", "")
        )
    except otel.OtlpError as exc:
        return errors.error_response(exc.status, "invalid_otlp", exc.reason, "body")
    result = otel.ingest(export)
    return HttpResponse(otel.encode_response(result, content_type), content_type=content_type)
