"""The MCP tools: their arguments (same limits as the REST API), what each does, and
`call_tool`, which turns every failure into an `isError` result naming the argument and why."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sessions_app import apikeys
from sessions_app import validation as v
from sessions_app.api.errors import unstorable_text
from sessions_app.api.schemas import (
    MAX_MS,
    MAX_TTL_HOURS,
    Asset,
    EndStatus,
    Role,
    SessionDetailOut,
    SessionOut,
    SessionSummaryOut,
    SessionTypeName,
    StatsOut,
    Tag,
    session_out,
)
from sessions_app.domain import QueryRecord
from sessions_app.exceptions import InvalidInput, SessionNotFound, StoreError
from sessions_app.store import get_session_store

logger = logging.getLogger(__name__)

SESSION_ID_PATTERN = rf"^{v.SESSION_ID_PATTERN}$"


class Args(BaseModel):
    """Tool arguments: exact types (no coercion), unknown arguments refused."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=False)


class CreateArgs(Args):
    assets: list[Asset] = Field(
        default_factory=list, max_length=v.MAX_ASSETS, description="Symbols, e.g. AAPL, BTC-USD."
    )
    session_type: SessionTypeName = Field(alias="sessionType")
    user_id: str = Field("", alias="userId", max_length=v.MAX_USER_ID_LENGTH)
    ttl_hours: float | None = Field(
        None, alias="ttlHours", gt=0, le=MAX_TTL_HOURS, description="Default from the policy."
    )
    tags: list[Tag] = Field(default_factory=list, max_length=v.MAX_TAGS)


class SessionArgs(Args):
    session_id: str = Field(
        alias="sessionId", pattern=SESSION_ID_PATTERN, description="Session id."
    )


class ListArgs(Args):
    user_id: str = Field(alias="userId", min_length=1, max_length=v.MAX_USER_ID_LENGTH)
    include_archived: bool = Field(False, alias="includeArchived")
    limit: int = Field(20, ge=1, le=200)
    cursor: str | None = Field(None, max_length=200, description="nextCursor of a previous call.")


class ExtendArgs(SessionArgs):
    hours: float = Field(24, gt=0, le=MAX_TTL_HOURS)


class AnalyticsArgs(Args):
    user_id: str | None = Field(None, alias="userId", min_length=1, max_length=128)
    session_type: SessionTypeName | None = Field(None, alias="sessionType")
    days: int = Field(30, ge=1, le=365)


class TrackQueryArgs(SessionArgs):
    query_type: str = Field(
        alias="queryType",
        min_length=1,
        max_length=v.MAX_SHORT_TEXT,
        pattern=r"^\s*[A-Za-z][A-Za-z0-9_.\-]*\s*$",
    )
    parameters: dict[str, Any] = Field(default_factory=dict)
    result_summary: str = Field("", alias="resultSummary", max_length=v.MAX_SUMMARY_LENGTH)
    execution_time_ms: float = Field(0.0, alias="executionTimeMs", ge=0, le=MAX_MS)
    cache_hit: bool = Field(False, alias="cacheHit")
    error: str = Field("", max_length=v.MAX_SUMMARY_LENGTH)


class AddMessageArgs(SessionArgs):
    role: Role
    content: str = Field(min_length=1, max_length=v.MAX_CONTENT_LENGTH)
    tool_name: str = Field("", alias="toolName", max_length=v.MAX_NAME_LENGTH)
    invocation_id: str = Field("", alias="invocationId", max_length=v.MAX_NAME_LENGTH)


class EndArgs(SessionArgs):
    status: EndStatus = "completed"


# ---- what each tool does (sync: runs in Django's thread via sync_to_async) -------------------


def _dump(schema: type[BaseModel], data) -> dict[str, Any]:
    return schema.model_validate(data).model_dump(mode="json")


def _create(args: CreateArgs) -> dict:
    session = get_session_store().create_session(
        assets=args.assets,
        session_type=args.session_type,
        user_id=args.user_id,
        ttl_hours=args.ttl_hours,
        tags=args.tags,
        source="mcp",
    )
    return _dump(SessionOut, session_out(session))


def _info(args: SessionArgs) -> dict:
    session = get_session_store().get_session(args.session_id)
    if session is None:
        raise SessionNotFound(args.session_id)
    return _dump(SessionDetailOut, session_out(session, detail=True))


def _list(args: ListArgs) -> dict:
    page = get_session_store().list_user_sessions(
        args.user_id,
        include_archived=args.include_archived,
        limit=args.limit,
        cursor=args.cursor or None,
    )
    return {
        "sessions": [_dump(SessionSummaryOut, item) for item in page.items],
        "nextCursor": page.next_cursor,
    }


def _extend(args: ExtendArgs) -> dict:
    expires_at = get_session_store().extend_session(args.session_id, hours=args.hours)
    return {"sessionId": args.session_id, "expiresAt": expires_at.isoformat()}


def _analytics(args: AnalyticsArgs) -> dict:
    from sessions_app.analytics import get_session_stats

    stats = get_session_stats(user_id=args.user_id, session_type=args.session_type, days=args.days)
    return _dump(StatsOut, stats)


def _track_query(args: TrackQueryArgs) -> dict:
    record = QueryRecord(
        query_type=args.query_type,
        parameters=args.parameters,
        result_summary=args.result_summary,
        execution_time_ms=args.execution_time_ms,
        cache_hit=args.cache_hit,
        error=args.error,
    )
    seq = get_session_store().add_query(args.session_id, record)
    return {"sessionId": args.session_id, "seq": seq}


def _add_message(args: AddMessageArgs) -> dict:
    seq = get_session_store().add_message(
        args.session_id,
        role=args.role,
        content=args.content,
        tool_name=args.tool_name,
        invocation_id=args.invocation_id,
    )
    return {"sessionId": args.session_id, "seq": seq}


def _end(args: EndArgs) -> dict:
    session = get_session_store().end_session(args.session_id, status=args.status)
    return _dump(SessionOut, session_out(session))


@dataclass(frozen=True)
class ToolSpec:
    args: type[Args]
    run: Callable[[Any], dict]
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
        "A user's sessions, newest first; includeArchived adds ended ones.",
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
    "end-session": ToolSpec(
        EndArgs,
        _end,
        "write",
        "End a live session as completed, failed or abandoned; it is archived right away.",
        types.ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False),
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


def _run_sync(spec: ToolSpec, args: Args) -> dict:
    # Django's request signals do this for views: drop connections that broke or aged out.
    close_old_connections()
    try:
        return spec.run(args)
    finally:
        close_old_connections()


_run = sync_to_async(_run_sync, thread_sensitive=True)


async def call_tool(name: str, arguments: dict | None, api_key=None) -> types.CallToolResult:
    """Run one tool; every failure becomes an error result, never an exception."""
    spec = TOOLS.get(name)
    if spec is None:
        return _error("unknown_tool", f"no tool named {name!r}; see tools/list")
    if api_key is not None and not apikeys.has_scope(api_key, spec.scope):
        return _error("forbidden", f"this API key lacks the '{spec.scope}' scope")
    arguments = arguments or {}
    problem = unstorable_text(arguments)
    if problem:
        return _error("invalid_argument", problem)
    try:
        args = spec.args.model_validate(arguments)
    except ValidationError as exc:
        return _validation_error(exc)
    try:
        return _result(await _run(spec, args))
    except InvalidInput as exc:
        return _error(exc.code, exc.reason, _argument_name(spec, exc.field))
    except SessionNotFound as exc:
        return _error(exc.code, str(exc), "sessionId")
    except StoreError as exc:  # not active, query limit, Redis down
        return _error(exc.code, str(exc))
    except DatabaseError:
        return _error("database_unavailable", "the database is unavailable; retry later")
    except Exception:  # a bug: log it, answer with an error result rather than drop the call
        logger.exception("MCP tool %s failed", name)
        return _error("internal_error", "unexpected server error")
