"""Plain data the store returns: a session with its state and history, list rows, events.

A session read from the store remembers what it was loaded with, so the changes a caller makes
to it (`add_query`, `state.update_context`, tags, purpose, metadata...) can be written back as
deltas by `update_session(id, session)`: concurrent writers never overwrite each other.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import uuid_utils


def new_session_id() -> str:
    """A generated session id: a UUIDv7 string, so ids sort by creation time."""
    return str(uuid_utils.uuid7())


def _encode(value: Any) -> str:
    # The store's own JSON form (validation.json_payload): compact, non-ASCII kept.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class QueryRecord:
    """One query a client ran in a session (the seed's QueryRecord)."""

    query_type: str
    parameters: dict[str, Any] = field(default_factory=dict)
    result_summary: str = ""
    execution_time_ms: float = 0.0
    cache_hit: bool = False
    error: str = ""
    event_id: str | None = None  # dropped as a duplicate if already applied to the session


@dataclass
class TimelineEvent:
    """A query, message or tool call at position `seq` of a session's timeline."""

    seq: int
    kind: str
    occurred_at: datetime
    query_type: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    result_summary: str = ""
    execution_ms: float | None = None
    cache_hit: bool = False
    error: str = ""
    role: str = ""
    content: str = ""
    tool_name: str = ""
    invocation_id: str = ""
    duration_ms: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    event_id: str = ""

    @property
    def timestamp(self) -> datetime:
        """The seed's name for when it happened."""
        return self.occurred_at

    @property
    def execution_time_ms(self) -> float | None:
        return self.execution_ms


@dataclass
class AnalysisHistory:
    total_queries: int = 0
    cache_hits: int = 0
    errors: int = 0
    recent_events: Sequence[TimelineEvent] = field(default_factory=list)
    # The latest queries (oldest first) read with the session; more come from `_more`.
    queries: list[TimelineEvent] = field(default_factory=list)
    _more: Callable[[int], list[TimelineEvent]] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.total_queries if self.total_queries else 0.0

    def get_recent_queries(self, n: int = 5) -> list[TimelineEvent]:
        """The last `n` queries of the session, oldest first, whatever else came between."""
        if n <= 0:
            return []
        if n > len(self.queries) and len(self.queries) < self.total_queries and self._more:
            return self._more(n)
        return self.queries[-n:]


class _Expiry:
    """`session.is_expired`: true past the expiry (the FIML seed's property), and callable as
    `session.is_expired(max_idle_seconds=...)` (the AIECS seed's method)."""

    def __init__(self, session: AnalysisSession):
        self._session = session

    def __call__(self, max_idle_seconds: float | None = None) -> bool:
        session = self._session
        now = time.time()
        if session.status != "active" or session.expires_at.timestamp() <= now:
            return True
        if max_idle_seconds is not None:
            return now - session.last_activity_at.timestamp() > max_idle_seconds
        return False

    def __bool__(self) -> bool:
        return self()

    def __eq__(self, other) -> bool:
        return bool(self) == other

    def __repr__(self) -> str:
        return repr(bool(self))


@dataclass
class SessionState:
    context: dict[str, Any] = field(default_factory=dict)
    intermediate_results: dict[str, Any] = field(default_factory=dict)
    preferences: dict[str, Any] = field(default_factory=dict)
    history: AnalysisHistory = field(default_factory=AnalysisHistory)

    def update_context(self, key: str, value: Any) -> None:
        """Set a context key; written by the next `update_session(id, session)`."""
        self.context[key] = value

    def get_context(self, key: str, default: Any = None) -> Any:
        return self.context.get(key, default)

    def store_intermediate_result(self, key: str, result: Any) -> None:
        """Keep an intermediate result; written by the next `update_session(id, session)`."""
        self.intermediate_results[key] = result

    def get_intermediate_result(self, key: str) -> Any:
        return self.intermediate_results.get(key)


@dataclass
class Loaded:
    """What a session held when it was read: the base its changes are computed against."""

    context: dict[str, str]  # key -> JSON text
    intermediate_results: dict[str, str]
    tags: list[str]
    purpose: str
    metadata: str  # JSON text


@dataclass
class AnalysisSession:
    """A session, live (from Redis) or archived (from Postgres)."""

    id: str
    user_id: str
    session_type: str
    status: str
    assets: list[str]
    tags: list[str]
    purpose: str
    created_at: datetime
    last_activity_at: datetime
    expires_at: datetime
    is_live: bool
    source: str = ""
    device: str = ""
    ip: str | None = None
    ended_at: datetime | None = None
    archived_at: datetime | None = None
    query_count: int = 0
    cache_hits: int = 0
    error_count: int = 0
    message_count: int = 0
    tool_call_count: int = 0
    total_execution_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal(0)
    event_count: int = 0
    request_count: int = 0  # AIECS: requests counted by update_session(increment_requests=)
    total_processing_time: float = 0.0  # AIECS: seconds added by update_session
    tool_duration_ms: float = 0.0  # sum of the tool calls' durations
    preferences: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    recent_events: Sequence[TimelineEvent] = field(default_factory=list)
    state: SessionState = field(default_factory=SessionState)
    # Changes since load, written by update_session(id, session).
    pending_queries: list[QueryRecord] = field(default_factory=list, repr=False, compare=False)
    loaded: Loaded | None = field(default=None, repr=False, compare=False)

    @property
    def session_id(self) -> str:
        """The AIECS seed's name for the id."""
        return self.id

    @property
    def type(self) -> str:
        """The FIML seed's name for the session type."""
        return self.session_type

    @property
    def is_archived(self) -> bool:
        return not self.is_live

    @property
    def last_accessed_at(self) -> datetime:
        return self.last_activity_at

    @property
    def is_expired(self) -> _Expiry:
        return _Expiry(self)

    @property
    def duration_seconds(self) -> float:
        end = self.ended_at or self.last_activity_at
        return max((end - self.created_at).total_seconds(), 0.0)

    def add_query(self, query: QueryRecord) -> None:
        """Record a query; written by the next `update_session(id, session)`."""
        self.pending_queries.append(query)
        history = self.state.history
        history.total_queries += 1
        history.cache_hits += int(bool(query.cache_hit))
        now = datetime.now(UTC)
        history.queries.append(
            TimelineEvent(
                seq=-1,
                kind="query",
                occurred_at=now,
                query_type=query.query_type,
                parameters=query.parameters,
                result_summary=query.result_summary,
                execution_ms=query.execution_time_ms,
                cache_hit=query.cache_hit,
                error=query.error,
            )
        )
        self.last_activity_at = now

    def changes(self) -> dict[str, Any]:
        """What changed since load: queries, context/result keys set or removed, meta fields."""
        loaded = self.loaded or Loaded({}, {}, [], "", "{}")
        result: dict[str, Any] = {"queries": list(self.pending_queries)}
        for name, current, before in (
            ("context", self.state.context, loaded.context),
            ("results", self.state.intermediate_results, loaded.intermediate_results),
        ):
            result[f"{name}_set"] = {
                key: value
                for key, value in current.items()
                if before.get(key) != _encode_safely(value)
            }
            result[f"{name}_removed"] = [key for key in before if key not in current]
        result["meta"] = {}
        if list(self.tags) != loaded.tags:
            result["meta"]["tags"] = self.tags
        if self.purpose != loaded.purpose:
            result["meta"]["purpose"] = self.purpose
        if _encode_safely(self.metadata) != loaded.metadata:
            result["meta"]["metadata"] = self.metadata
        return result

    def mark_saved(self) -> None:
        """After a successful update: the current state is the new base."""
        self.pending_queries.clear()
        self.loaded = Loaded(
            {key: _encode_safely(value) for key, value in self.state.context.items()},
            {key: _encode_safely(v) for key, v in self.state.intermediate_results.items()},
            list(self.tags),
            self.purpose,
            _encode_safely(self.metadata),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (datetimes as ISO text); `from_dict` reads it back."""
        data = dataclasses.asdict(self)
        data.pop("pending_queries")
        data.pop("loaded")
        data["state"]["history"].pop("_more", None)
        data["type"] = self.session_type
        return json.loads(json.dumps(data, default=_json_default))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisSession:
        """A session from `to_dict()` output (not bound to the store until read again)."""
        data = dict(data)
        data.pop("type", None)
        for name in ("created_at", "last_activity_at", "expires_at", "ended_at", "archived_at"):
            if isinstance(data.get(name), str):
                data[name] = datetime.fromisoformat(data[name])
        data["cost"] = Decimal(str(data.get("cost") or 0))
        events = [_event(e) for e in data.pop("recent_events", [])]
        state = dict(data.pop("state", {}))
        history = dict(state.pop("history", {}))
        history["recent_events"] = [_event(e) for e in history.get("recent_events", [])]
        history["queries"] = [_event(e) for e in history.get("queries", [])]
        session = cls(**data, recent_events=events, state=SessionState(**state))
        session.state.history = AnalysisHistory(**history)
        session.mark_saved()
        return session


def _event(data: dict[str, Any]) -> TimelineEvent:
    data = dict(data)
    if isinstance(data.get("occurred_at"), str):
        data["occurred_at"] = datetime.fromisoformat(data["occurred_at"])
    return TimelineEvent(**data)


def _encode_safely(value: Any) -> str:
    try:
        return _encode(value)
    except (TypeError, ValueError):
        return ""  # not JSON: differs from any stored value, so validation reports it


def _json_default(value: Any) -> Any:
    if isinstance(value, Sequence):  # the store's lazily parsed events
        return [dataclasses.asdict(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


@dataclass
class SessionSummary:
    """A row in a session list."""

    id: str
    user_id: str
    session_type: str
    status: str
    assets: list[str]
    tags: list[str]
    purpose: str
    created_at: datetime
    last_activity_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    query_count: int
    is_live: bool

    @property
    def total_queries(self) -> int:
        return self.query_count

    @property
    def type(self) -> str:
        return self.session_type


@dataclass
class SessionPage:
    items: list[SessionSummary]
    next_cursor: str | None


class SessionList(list):
    """A list of summaries (the seed's `list_user_sessions` result) carrying `next_cursor`."""

    def __init__(self, items=(), next_cursor: str | None = None):
        super().__init__(items)
        self.next_cursor = next_cursor

    @property
    def items(self) -> list:
        """Compatibility with SessionPage: the rows themselves."""
        return list(self)
