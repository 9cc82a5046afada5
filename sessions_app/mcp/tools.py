"""The MCP tools: their arguments (same limits as the REST API), what each does, and
`call_tool`, which turns every failure into an `isError` result naming the argument and why."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sessions_app import apikeys
from sessions_app import validation as v
from sessions_app.api.endpoints import alist_page, aread_session
from sessions_app.api.errors import unstorable_field
from sessions_app.api.ingest import Unsupported, acall_store
from sessions_app.api.limits import (
    ISO_TIME_MAX,
    ISO_TIME_PATTERN,
    LIST_LIMITS,
    TIMELINE_LIMITS,
    iso_time,
)
from sessions_app.api.schemas import (
    MAX_COST,
    MAX_MS,
    MAX_TOKENS,
    MAX_TTL_HOURS,
    Asset,
    EndStatus,
    Role,
    SessionDetailOut,
    SessionOut,
    SessionSummaryOut,
    SessionTypeName,
    StatsOut,
    StatusName,
    Tag,
    TimelineEventOut,
    session_out,
)
from sessions_app.domain import QueryRecord
from sessions_app.exceptions import (
    InvalidInput,
    SessionAlreadyExists,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
)
from sessions_app.store.aio import get_async_session_store

logger = logging.getLogger(__name__)

SESSION_ID_PATTERN = rf"^{v.SESSION_ID_PATTERN}$"
JSON_LIMIT = f"At most {v.MAX_JSON_BYTES} bytes of JSON."
# The REST routes' limits, stated once there (sessions_app.api.endpoints).
LIST_DEFAULT, LIST_MAX, CURSOR_MAX = LIST_LIMITS
TIMELINE_MAX, TIMELINE_OFFSET_MAX = TIMELINE_LIMITS


class Args(BaseModel):
    """Tool arguments: exact types (no coercion), unknown arguments refused."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=False)


class CreateArgs(Args):
    assets: list[Asset] = Field(
        default_factory=list, max_length=v.MAX_ASSETS, description="Symbols, e.g. AAPL, BTC-USD."
    )
    session_type: SessionTypeName = Field(alias="sessionType")
    user_id: str = Field(
        "", alias="userId", max_length=v.MAX_USER_ID_LENGTH, pattern=v.USER_ID_PATTERN
    )
    ttl_hours: float | None = Field(
        None, alias="ttlHours", gt=0, le=MAX_TTL_HOURS, description="Default from the policy."
    )
    tags: list[Tag] = Field(default_factory=list, max_length=v.MAX_TAGS)
    session_id: str | None = Field(
        None,
        alias="sessionId",
        pattern=SESSION_ID_PATTERN,
        description="Caller-chosen id (fails if taken); generated when absent.",
    )
    purpose: str = Field("", max_length=v.MAX_PURPOSE_LENGTH)


class SessionArgs(Args):
    session_id: str = Field(
        alias="sessionId", pattern=SESSION_ID_PATTERN, description="Session id."
    )


class ListArgs(Args):
    user_id: str | None = Field(
        None,
        alias="userId",
        min_length=1,
        max_length=v.MAX_USER_ID_LENGTH,
        pattern=v.USER_ID_PATTERN,
    )
    status: StatusName | None = Field(None, description="Only sessions with this status.")
    tags: list[Tag] | None = Field(
        None, max_length=v.MAX_TAGS, description="Only sessions carrying all of these tags."
    )
    include_archived: bool = Field(False, alias="includeArchived")
    limit: int = Field(LIST_DEFAULT, ge=1, le=LIST_MAX)
    cursor: str | None = Field(
        None, max_length=CURSOR_MAX, description="nextCursor of a previous call."
    )
    session_type: SessionTypeName | None = Field(
        None, alias="sessionType", description="Only sessions of this type."
    )
    created_from: str | None = Field(
        None,
        alias="createdFrom",
        max_length=ISO_TIME_MAX,
        pattern=ISO_TIME_PATTERN,
        description="Only sessions created at or after this time (ISO 8601; UTC if no offset).",
    )
    created_to: str | None = Field(
        None,
        alias="createdTo",
        max_length=ISO_TIME_MAX,
        pattern=ISO_TIME_PATTERN,
        description="Only sessions created before this time (ISO 8601; UTC if no offset).",
    )


class ExtendArgs(SessionArgs):
    hours: float = Field(24, gt=0, le=MAX_TTL_HOURS)


class AnalyticsArgs(Args):
    user_id: str | None = Field(
        None,
        alias="userId",
        min_length=1,
        max_length=v.MAX_USER_ID_LENGTH,
        pattern=v.USER_ID_PATTERN,
    )
    session_type: SessionTypeName | None = Field(None, alias="sessionType")
    days: int = Field(30, ge=1, le=365)


class TrackQueryArgs(SessionArgs):
    query_type: str = Field(
        alias="queryType",
        min_length=1,
        max_length=v.MAX_QUERY_TYPE_LENGTH,
        pattern=v.QUERY_TYPE_INPUT_PATTERN,
    )
    parameters: dict[str, Any] = Field(default_factory=dict, description=JSON_LIMIT)
    result_summary: str = Field("", alias="resultSummary", max_length=v.MAX_SUMMARY_LENGTH)
    execution_time_ms: float = Field(0.0, alias="executionTimeMs", ge=0, le=MAX_MS)
    cache_hit: bool = Field(False, alias="cacheHit")
    error: str = Field("", max_length=v.MAX_SUMMARY_LENGTH)


class AddMessageArgs(SessionArgs):
    role: Role
    content: str = Field(min_length=1, max_length=v.MAX_CONTENT_LENGTH, pattern=v.NOT_BLANK_PATTERN)
    tool_name: str = Field("", alias="toolName", max_length=v.MAX_NAME_LENGTH)
    invocation_id: str = Field("", alias="invocationId", max_length=v.MAX_NAME_LENGTH)
    tokens_in: int = Field(0, alias="tokensIn", ge=0, le=MAX_TOKENS)
    tokens_out: int = Field(0, alias="tokensOut", ge=0, le=MAX_TOKENS)
    cost: float = Field(0.0, ge=0, le=MAX_COST)


class EndArgs(SessionArgs):
    status: EndStatus = "completed"


class ToolInvocationArgs(SessionArgs):
    tool_name: str = Field(alias="toolName", min_length=1, max_length=v.MAX_NAME_LENGTH)
    invocation_id: str = Field("", alias="invocationId", max_length=v.MAX_NAME_LENGTH)
    duration_ms: float | None = Field(None, alias="durationMs", ge=0, le=MAX_MS)
    tokens_in: int = Field(0, alias="tokensIn", ge=0, le=MAX_TOKENS)
    tokens_out: int = Field(0, alias="tokensOut", ge=0, le=MAX_TOKENS)
    cost: float = Field(0.0, ge=0, le=MAX_COST)
    error: str = Field("", max_length=v.MAX_SUMMARY_LENGTH)


class MetadataArgs(SessionArgs):
    purpose: str | None = Field(None, max_length=v.MAX_PURPOSE_LENGTH)
    tags: list[Tag] | None = Field(None, max_length=v.MAX_TAGS, description="Replaces the tags.")
    custom_metadata: dict[str, Any] | None = Field(
        None, alias="customMetadata", description=f"Merged key by key. {JSON_LIMIT}"
    )


class RequestArgs(SessionArgs):
    increment_requests: bool = Field(True, alias="incrementRequests")
    add_processing_time: float = Field(
        0.0, alias="addProcessingTime", ge=0, le=MAX_MS / 1000, description="Seconds."
    )
    mark_error: bool = Field(False, alias="markError")


class EntryArgs(SessionArgs):
    key: str = Field(min_length=1, max_length=v.MAX_CONTEXT_KEY_LENGTH, pattern=r"\S")
    value: Any = Field(description=f"Any JSON value. {JSON_LIMIT}")


class TimelineArgs(SessionArgs):
    offset: int = Field(0, ge=0, le=TIMELINE_OFFSET_MAX)
    limit: int = Field(50, ge=1, le=TIMELINE_MAX)


# ---- what each tool does (async: the async store; analytics through sync_to_async) ---------


def _dump(schema: type[BaseModel], data) -> dict[str, Any]:
    return schema.model_validate(data).model_dump(mode="json")


async def _store():
    return await get_async_session_store()


async def _create(args: CreateArgs) -> dict:
    fields = {"session_id": args.session_id} if args.session_id else {}
    session = await acall_store(
        "create_session",
        assets=args.assets,
        session_type=args.session_type,
        user_id=args.user_id,
        ttl_hours=args.ttl_hours,
        tags=args.tags,
        purpose=args.purpose,
        source="mcp",
        **fields,
    )
    return _dump(SessionOut, session_out(session))


async def _info(args: SessionArgs) -> dict:
    session = await aread_session(args.session_id, 20)
    return _dump(SessionDetailOut, session_out(session, detail=True))


async def _list(args: ListArgs) -> dict:
    page = await alist_page(
        user_id=args.user_id,
        status=args.status,
        tags=args.tags,
        include_archived=args.include_archived,
        limit=args.limit,
        cursor=args.cursor or None,
        session_type=args.session_type,
        created_from=iso_time("created_from", args.created_from),
        created_to=iso_time("created_to", args.created_to),
    )
    return {
        "sessions": [_dump(SessionSummaryOut, item) for item in page.items],
        "nextCursor": page.next_cursor,
    }


async def _extend(args: ExtendArgs) -> dict:
    expires_at = await (await _store()).extend_session(args.session_id, hours=args.hours)
    return {"sessionId": args.session_id, "expiresAt": expires_at.isoformat()}


def _analytics_sync(args: AnalyticsArgs) -> dict:
    from sessions_app.analytics import get_session_stats

    # Django's request signals do this for views: drop connections that broke or aged out.
    close_old_connections()
    try:
        stats = get_session_stats(
            user_id=args.user_id, session_type=args.session_type, days=args.days
        )
        return _dump(StatsOut, stats)
    finally:
        close_old_connections()


async def _analytics(args: AnalyticsArgs) -> dict:
    return await sync_to_async(_analytics_sync, thread_sensitive=True)(args)


async def _track_query(args: TrackQueryArgs) -> dict:
    record = QueryRecord(
        query_type=args.query_type,
        parameters=args.parameters,
        result_summary=args.result_summary,
        execution_time_ms=args.execution_time_ms,
        cache_hit=args.cache_hit,
        error=args.error,
    )
    seq = await (await _store()).add_query(args.session_id, record)
    return {"sessionId": args.session_id, "seq": seq}


async def _add_message(args: AddMessageArgs) -> dict:
    seq = await (await _store()).add_message(
        args.session_id,
        role=args.role,
        content=args.content,
        tool_name=args.tool_name,
        invocation_id=args.invocation_id,
        tokens_in=args.tokens_in,
        tokens_out=args.tokens_out,
        cost=args.cost,
    )
    return {"sessionId": args.session_id, "seq": seq}


async def _end(args: EndArgs) -> dict:
    session = await (await _store()).end_session(args.session_id, status=args.status)
    return _dump(SessionOut, session_out(session))


async def _tool_invocation(args: ToolInvocationArgs) -> dict:
    seq = await (await _store()).record_tool_call(
        args.session_id, **args.model_dump(exclude={"session_id"})
    )
    return {"sessionId": args.session_id, "seq": seq}


async def _metadata(args: MetadataArgs) -> dict:
    fields = args.model_dump(exclude={"session_id"}, exclude_none=True)
    await acall_store("update_session_metadata", args.session_id, **fields)
    return await _info(args)


async def _request(args: RequestArgs) -> dict:
    await acall_store("update_session", args.session_id, **args.model_dump(exclude={"session_id"}))
    return {"sessionId": args.session_id, "recorded": True}


async def _context(args: EntryArgs) -> dict:
    await (await _store()).update_context(args.session_id, args.key, args.value)
    return {"sessionId": args.session_id, "key": args.key.strip()}


async def _result_entry(args: EntryArgs) -> dict:
    await (await _store()).store_intermediate_result(args.session_id, args.key, args.value)
    return {"sessionId": args.session_id, "key": args.key.strip()}


async def _timeline(args: TimelineArgs) -> dict:
    events, total = await (await _store()).get_timeline(
        args.session_id, offset=args.offset, limit=args.limit
    )
    return {"events": [_dump(TimelineEventOut, event) for event in events], "total": total}


async def _statistics(args: SessionArgs) -> dict:
    stats = await acall_store("get_session_statistics", args.session_id)
    if stats is None:
        raise SessionNotFound(args.session_id)
    return json.loads(json.dumps(stats, default=str))


async def _delete(args: SessionArgs) -> dict:
    if not await (await _store()).delete_session(args.session_id):
        raise SessionNotFound(args.session_id)
    return {"sessionId": args.session_id, "deleted": True}


@dataclass(frozen=True)
class ToolSpec:
    args: type[Args]
    run: Callable[[Any], Awaitable[dict]]
    scope: str
    description: str
    annotations: types.ToolAnnotations

    def tool(self, name: str) -> types.Tool:
        return types.Tool(
            name=name,
            description=self.description,
            input_schema=self.args.model_json_schema(by_alias=True),
            annotations=self.annotations,
        )


_READ = types.ToolAnnotations(read_only_hint=True)
_WRITE = types.ToolAnnotations(read_only_hint=False, destructive_hint=False)

TOOLS: dict[str, ToolSpec] = {
    "create-analysis-session": ToolSpec(
        CreateArgs,
        _create,
        "write",
        "Start an analysis session for some assets; returns the session with its id.",
        _WRITE,
    ),
    "get-session-info": ToolSpec(
        SessionArgs,
        _info,
        "read",
        "A session (live or archived) with its context, counters and latest events.",
        _READ,
    ),
    "list-sessions": ToolSpec(
        ListArgs,
        _list,
        "read",
        "Sessions newest first, by user, status and tags (all of them); "
        "includeArchived adds ended ones.",
        _READ,
    ),
    "extend-session": ToolSpec(
        ExtendArgs,
        _extend,
        "write",
        "Push a live session's expiry back by `hours` (up to its type's max TTL).",
        _WRITE,
    ),
    "get-session-analytics": ToolSpec(
        AnalyticsArgs,
        _analytics,
        "read",
        "Session statistics over the last `days`, optionally for one user and/or type.",
        _READ,
    ),
    "get-session-timeline": ToolSpec(
        TimelineArgs,
        _timeline,
        "read",
        "A page of a session's timeline (queries, messages, tool calls) in order.",
        _READ,
    ),
    "get-session-statistics": ToolSpec(
        SessionArgs,
        _statistics,
        "read",
        "One session's statistics: tools used, durations, tokens, cost, requests and errors.",
        _READ,
    ),
    "track-query": ToolSpec(
        TrackQueryArgs,
        _track_query,
        "write",
        "Record a query run in a live session (fails once the session's query limit is hit).",
        _WRITE,
    ),
    "add-message": ToolSpec(
        AddMessageArgs,
        _add_message,
        "write",
        "Record a conversation message (user, assistant, tool or system) in a live session.",
        _WRITE,
    ),
    "record-tool-invocation": ToolSpec(
        ToolInvocationArgs,
        _tool_invocation,
        "write",
        "Record (link) a tool invocation with its duration, tokens, cost and error.",
        _WRITE,
    ),
    "update-session-metadata": ToolSpec(
        MetadataArgs,
        _metadata,
        "write",
        "Change a live session's purpose, tags or custom metadata (what is left out stays).",
        _WRITE,
    ),
    "record-request": ToolSpec(
        RequestArgs,
        _request,
        "write",
        "Count a request, add its processing time (seconds) and mark an error if it failed.",
        _WRITE,
    ),
    "update-context": ToolSpec(
        EntryArgs, _context, "write", "Set one context key of a live session.", _WRITE
    ),
    "store-intermediate-result": ToolSpec(
        EntryArgs,
        _result_entry,
        "write",
        "Set one intermediate result of a live session.",
        _WRITE,
    ),
    "end-session": ToolSpec(
        EndArgs,
        _end,
        "write",
        "End a live session as completed, failed or abandoned; it is archived right away.",
        types.ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False),
    ),
    "delete-session": ToolSpec(
        SessionArgs,
        _delete,
        "write",
        "Delete a session, live or archived, with its whole timeline.",
        types.ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True),
    ),
}


# ---- results ---------------------------------------------------------------------------------


def _result(data: dict) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(data, ensure_ascii=False))],
        structured_content=data,
    )


def _error(code: str, reason: str, argument: str | None = None) -> types.CallToolResult:
    text = f"Invalid argument '{argument}': {reason}" if argument else reason
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        structured_content={"error": {"code": code, "field": argument, "reason": reason}},
        is_error=True,
    )


def _argument_name(spec: ToolSpec, field: str | None) -> str | None:
    """The tool's argument name for a store field name (ttl_hours -> ttlHours)."""
    if not field:
        return None
    info = spec.args.model_fields.get(field)
    return (info.alias or field) if info else field


def _validation_error(exc: ValidationError) -> types.CallToolResult:
    first = exc.errors()[0]
    argument = ".".join(str(part) for part in first["loc"]) or None
    reason = first["msg"]
    if first["type"] == "missing":
        reason = "is required"
    elif first["type"] == "extra_forbidden":
        reason = "is not an argument of this tool"
    return _error("invalid_argument", reason, argument)


async def call_tool(name: str, arguments: dict | None, api_key=None) -> types.CallToolResult:
    """Run one tool; every failure becomes an error result, never an exception."""
    spec = TOOLS.get(name)
    if spec is None:
        return _error("unknown_tool", f"no tool named {name!r}; see tools/list")
    if api_key is not None and not apikeys.has_scope(api_key, spec.scope):
        return _error("forbidden", f"this API key lacks the '{spec.scope}' scope")
    arguments = arguments or {}
    problem = unstorable_field(arguments)
    if problem:
        return _error("invalid_argument", problem[1], problem[0])
    try:
        args = spec.args.model_validate(arguments)
    except ValidationError as exc:
        return _validation_error(exc)
    try:
        return _result(await spec.run(args))
    except InvalidInput as exc:
        return _error(exc.code, exc.reason, _argument_name(spec, exc.field))
    except SessionNotFound as exc:
        return _error(exc.code, str(exc), "sessionId")
    except StoreUnavailable as exc:  # the message names Redis's host:port: not for clients
        return _error(exc.code, "the live session store is unavailable; retry later")
    except Unsupported as exc:
        return _error("unsupported", str(exc))
    except StoreError as exc:  # not active, query limit, session exists
        conflict = isinstance(exc, SessionAlreadyExists)
        return _error(exc.code, str(exc), "sessionId" if conflict else None)
    except DatabaseError:
        return _error("database_unavailable", "the database is unavailable; retry later")
    except Exception:  # a bug: log it, answer with an error result rather than drop the call
        logger.exception("MCP tool %s failed", name)
        return _error("internal_error", "unexpected server error")
