"""Request and response bodies of the REST API, with the limits the store enforces."""

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints, WithJsonSchema

from sessions_app import validation as v
from sessions_app.models import END_STATUSES, MessageRole, SessionStatus, SessionType

# A session id (generated UUIDv7 or caller-chosen), by the one rule in validation.
SessionId = Annotated[str, StringConstraints(pattern=rf"^{v.SESSION_ID_PATTERN}$")]

if TYPE_CHECKING:
    # Built from the models' choices at import time (pydantic validates them); statically, str.
    SessionTypeName = str
    EndStatus = str
    Role = str
    StatusName = str
else:
    SessionTypeName = Literal[tuple(SessionType.values)]
    EndStatus = Literal[tuple(str(status) for status in END_STATUSES)]
    Role = Literal[tuple(MessageRole.values)]
    StatusName = Literal[tuple(SessionStatus.values)]

# Numeric bounds come from validation.py, which derives them from the archive's columns.
MAX_MS = v.MAX_DURATION_MS
MAX_COST = v.MAX_COST
MAX_TOKENS = v.MAX_TOKENS
MAX_TTL_HOURS = v.MAX_TTL_HOURS  # the policy's max TTL (usually 168) is checked by the store

Asset = Annotated[
    str,
    StringConstraints(min_length=1, max_length=v.MAX_ASSET_LENGTH, pattern=v.ASSET_PATTERN),
]
Tag = Annotated[
    str, StringConstraints(min_length=1, max_length=v.MAX_TAG_LENGTH, pattern=v.NOT_BLANK_PATTERN)
]
# Checked by validation.ip_address ("" means none); the schema says so, so generated clients
# send addresses.
IpAddress = Annotated[
    str,
    StringConstraints(max_length=45),  # the longest textual form: IPv4-mapped IPv6
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 45,
            "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}, {"maxLength": 0}],
        }
    ),
]
JsonObject = dict[str, Any]
# JSON Schema counts 3.0 as an integer; strict pydantic would not.
Count = Annotated[
    int, BeforeValidator(lambda x: int(x) if isinstance(x, float) and x.is_integer() else x)
]


class StrictIn(BaseModel):
    """Request bodies: JSON objects only, no type coercion ("1" is not a number, 1 not a bool).

    Not ninja's Schema: that one reads attributes off any value, so it would accept a list.
    """

    model_config = ConfigDict(strict=True, extra="forbid")


class ErrorDetail(Schema):
    code: str = Field(description="Machine-readable error code.", examples=["invalid_input"])
    field: str | None = Field(
        description="The request field at fault, if any.", examples=["ttl_hours"]
    )
    reason: str = Field(description="What is wrong, for people.", examples=["must be positive"])


class ErrorOut(Schema):
    """Every error response has this shape."""

    error: ErrorDetail


# Caller-chosen session ids (the seed's `session_id="user-123"`) follow the store's one rule.
SessionIdText = SessionId


class SessionCreateFields(StrictIn):
    session_type: SessionTypeName = Field(examples=["equity"])
    user_id: str = Field(
        "", max_length=v.MAX_USER_ID_LENGTH, pattern=v.USER_ID_PATTERN, examples=["analyst-42"]
    )
    assets: list[Asset] = Field(default_factory=list, max_length=v.MAX_ASSETS, examples=[["AAPL"]])
    tags: list[Tag] = Field(default_factory=list, max_length=v.MAX_TAGS, examples=[["earnings"]])
    ttl_hours: float | None = Field(
        None,
        gt=0,
        le=MAX_TTL_HOURS,
        description="Hours until the session expires; default and maximum come from the "
        "retention policy of its type.",
        examples=[24],
    )
    purpose: str = Field("", max_length=v.MAX_PURPOSE_LENGTH, examples=["Q3 earnings review"])
    source: str = Field("", max_length=v.MAX_SHORT_TEXT, examples=["web"])
    device: str = Field("", max_length=v.MAX_SHORT_TEXT, examples=["desktop"])
    ip: IpAddress | None = Field(None, description="Client IP address (no IPv6 zone id).")
    preferences: JsonObject = Field(default_factory=dict, description="JSON object, <= 32 KiB.")
    metadata: JsonObject = Field(default_factory=dict, description="JSON object, <= 32 KiB.")


class SessionCreateIn(SessionCreateFields):
    session_id: SessionIdText | None = Field(
        None,
        description="Caller-chosen id (409 if a session already has it); generated when absent.",
        examples=["user-123-web"],
    )


class SessionMetadataIn(StrictIn):
    """What `PATCH /sessions/{id}` changes; fields left out stay as they are."""

    purpose: str | None = Field(None, max_length=v.MAX_PURPOSE_LENGTH, examples=["Q3 review"])
    tags: list[Tag] | None = Field(None, max_length=v.MAX_TAGS, examples=[["earnings"]])
    metadata: JsonObject | None = Field(
        None, description="Custom metadata, merged key by key; <= 32 KiB.", examples=[{"k": 1}]
    )


class SessionCountersIn(StrictIn):
    """AIECS request counters: one request, its processing time, whether it failed."""

    increment_requests: bool = Field(True, description="Count one request.")
    add_processing_time: float = Field(
        0.0,
        ge=0,
        le=v.MAX_DURATION_MS / 1000,
        description="Seconds of processing to add.",
        examples=[1.5],
    )
    mark_error: bool = Field(False, description="Count one error.")


class TimelineEventOut(Schema):
    seq: int = Field(description="Position in the session's timeline, from 0.")
    kind: Literal["query", "message", "tool_call"]
    occurred_at: datetime
    query_type: str
    parameters: JsonObject
    result_summary: str
    execution_ms: float | None
    cache_hit: bool
    error: str
    role: str
    content: str
    tool_name: str
    invocation_id: str
    duration_ms: float | None
    tokens_in: int
    tokens_out: int
    cost: float


class SessionOut(Schema):
    id: str
    user_id: str
    session_type: str
    status: str = Field(examples=["active"])
    is_live: bool = Field(description="True while the session is in the live store (Redis).")
    assets: list[str]
    tags: list[str]
    purpose: str
    source: str
    device: str
    ip: str | None
    created_at: datetime
    last_activity_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    archived_at: datetime | None
    query_count: int
    cache_hits: int
    cache_hit_rate: float
    error_count: int
    message_count: int
    tool_call_count: int
    event_count: int
    total_execution_ms: float
    tokens_in: int
    tokens_out: int
    cost: float
    request_count: int = Field(description="AIECS: requests counted (POST .../requests).")
    total_processing_time: float = Field(description="AIECS: seconds of processing counted.")
    preferences: JsonObject
    metadata: JsonObject


class SessionDetailOut(SessionOut):
    context: JsonObject
    intermediate_results: JsonObject
    recent_events: list[TimelineEventOut] = Field(description="The latest events, oldest first.")


class SessionSummaryOut(Schema):
    id: str
    user_id: str
    session_type: str
    status: str
    is_live: bool
    assets: list[str]
    tags: list[str]
    purpose: str
    created_at: datetime
    last_activity_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    query_count: int


class SessionPageOut(Schema):
    items: list[SessionSummaryOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class TimelinePageOut(Schema):
    items: list[TimelineEventOut]
    total: int = Field(description="Events in the whole timeline.")
    offset: int
    limit: int


class QueryIn(StrictIn):
    query_type: str = Field(
        min_length=1,
        max_length=v.MAX_QUERY_TYPE_LENGTH,
        pattern=v.QUERY_TYPE_INPUT_PATTERN,
        examples=["price_history"],
    )
    parameters: JsonObject = Field(default_factory=dict, examples=[{"symbol": "AAPL"}])
    result_summary: str = Field("", max_length=v.MAX_SUMMARY_LENGTH, examples=["252 rows"])
    execution_time_ms: float = Field(0.0, ge=0, le=MAX_MS, examples=[12.5])
    cache_hit: bool = False
    error: str = Field("", max_length=v.MAX_SUMMARY_LENGTH)


class MessageIn(StrictIn):
    role: Role = Field(examples=["user"])
    content: str = Field(
        min_length=1,
        max_length=v.MAX_CONTENT_LENGTH,
        pattern=v.NOT_BLANK_PATTERN,
        examples=["Compare AAPL"],
    )
    tool_name: str = Field("", max_length=v.MAX_NAME_LENGTH)
    invocation_id: str = Field("", max_length=v.MAX_NAME_LENGTH)
    tokens_in: Count = Field(0, ge=0, le=MAX_TOKENS, description="Model input tokens.")
    tokens_out: Count = Field(0, ge=0, le=MAX_TOKENS, description="Model output tokens.")
    cost: float = Field(0.0, ge=0, le=MAX_COST, description="What the model call cost.")


class ToolCallIn(StrictIn):
    tool_name: str = Field(
        min_length=1,
        max_length=v.MAX_NAME_LENGTH,
        pattern=v.NOT_BLANK_PATTERN,
        examples=["get_quote"],
    )
    invocation_id: str = Field("", max_length=v.MAX_NAME_LENGTH, examples=["call-1"])
    duration_ms: float | None = Field(None, ge=0, le=MAX_MS, examples=[85.0])
    tokens_in: Count = Field(0, ge=0, le=MAX_TOKENS, examples=[120])
    tokens_out: Count = Field(0, ge=0, le=MAX_TOKENS, examples=[480])
    cost: float = Field(0.0, ge=0, le=MAX_COST, examples=[0.0021])
    error: str = Field("", max_length=v.MAX_SUMMARY_LENGTH)


class EventCreatedOut(Schema):
    session_id: str
    seq: int = Field(description="The new event's position in the timeline.")


class EntryIn(StrictIn):
    key: str = Field(
        min_length=1,
        max_length=v.MAX_CONTEXT_KEY_LENGTH,
        pattern=v.NOT_BLANK_PATTERN,
        examples=["watchlist"],
    )
    value: Any = Field(description="Any JSON value, <= 32 KiB encoded.", examples=[["AAPL"]])


class EntryOut(Schema):
    session_id: str
    key: str


class ExtendIn(StrictIn):
    hours: float = Field(gt=0, le=MAX_TTL_HOURS, examples=[12])


class ExtendOut(Schema):
    session_id: str
    expires_at: datetime


class EndIn(StrictIn):
    status: EndStatus = Field("completed", examples=["completed"])


class PeriodOut(Schema):
    start: date
    end: date
    days: int


class CountOf(Schema):
    count: int


class AssetCount(CountOf):
    asset: str


class TagCount(CountOf):
    tag: str


class StatsOut(Schema):
    """Live and archived sessions over a period (rates are fractions 0..1, durations seconds)."""

    model_config = ConfigDict(extra="allow")

    period: PeriodOut
    user_id: str | None
    session_type: str | None
    total_sessions: int
    active_sessions: int
    archived_sessions: int
    live_available: bool = Field(description="False when live counts could not be read.")
    total_queries: int
    total_messages: int
    total_tool_calls: int
    cache_hits: int
    total_errors: int
    avg_duration_seconds: float
    duration_p50_seconds: float
    duration_p95_seconds: float
    avg_queries_per_session: float
    completion_rate: float
    abandonment_rate: float
    failure_rate: float
    expiry_rate: float
    error_rate: float
    cache_hit_rate: float
    tokens_in: int
    tokens_out: int
    total_tokens: int
    total_cost: float
    total_requests: int = Field(description="AIECS requests counted (archived and live).")
    total_processing_time: float = Field(description="AIECS processing seconds counted.")
    live_counters_complete: bool = Field(
        description="False when there were more live sessions than the totals read."
    )
    top_assets: list[AssetCount]
    popular_tags: list[TagCount]
    query_type_distribution: dict[str, int]
    session_type_breakdown: dict[str, int]
    status_breakdown: dict[str, int]


class UserSummaryOut(StatsOut):
    first_session_at: datetime | None
    last_activity_at: datetime | None


def session_out(session, *, detail: bool = False) -> dict[str, Any]:
    """The API form of an AnalysisSession (with state and recent events when `detail`)."""
    data = {
        "id": session.id,
        "user_id": session.user_id,
        "session_type": session.session_type,
        "status": session.status,
        "is_live": session.is_live,
        "assets": session.assets,
        "tags": session.tags,
        "purpose": session.purpose,
        "source": session.source,
        "device": session.device,
        "ip": session.ip,
        "created_at": session.created_at,
        "last_activity_at": session.last_activity_at,
        "expires_at": session.expires_at,
        "ended_at": session.ended_at,
        "archived_at": session.archived_at,
        "query_count": session.query_count,
        "cache_hits": session.cache_hits,
        "cache_hit_rate": session.state.history.cache_hit_rate,
        "error_count": session.error_count,
        "message_count": session.message_count,
        "tool_call_count": session.tool_call_count,
        "event_count": session.event_count,
        "total_execution_ms": session.total_execution_ms,
        "tokens_in": session.tokens_in,
        "tokens_out": session.tokens_out,
        "cost": float(session.cost),
        "request_count": session.request_count,
        "total_processing_time": session.total_processing_time,
        "preferences": session.preferences,
        "metadata": session.metadata,
    }
    if detail:
        data["context"] = session.state.context
        data["intermediate_results"] = session.state.intermediate_results
        data["recent_events"] = session.recent_events
    return data


class TokenUsageOut(Schema):
    input: int
    output: int


class SessionStatisticsOut(Schema):
    """One session's statistics (the MCP manager's get_session_statistics)."""

    session_id: str
    status: str
    total_invocations: int = Field(description="Tool calls.")
    total_duration_ms: float = Field(description="Summed tool-call durations.")
    tools_used: list[str]
    total_messages: int
    messages_by_role: dict[str, int]
    token_usage: TokenUsageOut
    estimated_cost: float
    duration_seconds: float


# The batch answer is built from plain dicts: pydantic models, not ninja Schemas, whose
# per-object ORM getter wrapping costs ~1 ms on a 100-item answer.
class IngestErrorOut(BaseModel):
    code: str
    field: str | None
    reason: str


class IngestItemOut(BaseModel):
    index: int = Field(description="Position of the operation in the request.")
    event_id: str | None
    status: Literal["accepted", "duplicate", "error"]
    seq: int | None = Field(None, description="Timeline position of a new event.")
    session_id: str | None = Field(None, description="Id of a created session.")
    error: IngestErrorOut | None = None


class IngestOut(BaseModel):
    items: list[IngestItemOut]
    accepted: int
    duplicate: int
    error: int
