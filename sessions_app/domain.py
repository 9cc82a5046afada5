"""Plain data the store returns: a session with its state and history, list rows, events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import uuid_utils


def new_session_id() -> str:
    """A generated session id: a UUIDv7 string, so ids sort by creation time."""
    return str(uuid_utils.uuid7())


@dataclass
class QueryRecord:
    """One query a client ran in a session (the seed's QueryRecord)."""

    query_type: str
    parameters: dict[str, Any] = field(default_factory=dict)
    result_summary: str = ""
    execution_time_ms: float = 0.0
    cache_hit: bool = False
    error: str = ""


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


@dataclass
class AnalysisHistory:
    total_queries: int = 0
    cache_hits: int = 0
    errors: int = 0
    recent_events: list[TimelineEvent] = field(default_factory=list)

    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.total_queries if self.total_queries else 0.0

    def get_recent_queries(self, n: int = 5) -> list[TimelineEvent]:
        """The last `n` queries among the session's recent events, oldest first."""
        queries = [event for event in self.recent_events if event.kind == "query"]
        return queries[-n:] if n > 0 else []


@dataclass
class SessionState:
    context: dict[str, Any] = field(default_factory=dict)
    intermediate_results: dict[str, Any] = field(default_factory=dict)
    preferences: dict[str, Any] = field(default_factory=dict)
    history: AnalysisHistory = field(default_factory=AnalysisHistory)


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
    preferences: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    recent_events: list[TimelineEvent] = field(default_factory=list)
    state: SessionState = field(default_factory=SessionState)

    @property
    def duration_seconds(self) -> float:
        end = self.ended_at or self.last_activity_at
        return max((end - self.created_at).total_seconds(), 0.0)


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


@dataclass
class SessionPage:
    items: list[SessionSummary]
    next_cursor: str | None
