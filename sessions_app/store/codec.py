"""Converting between Redis replies and the domain objects; cursors of session lists."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sessions_app import validation
from sessions_app.domain import (
    AnalysisHistory,
    AnalysisSession,
    Loaded,
    SessionState,
    SessionSummary,
    TimelineEvent,
)
from sessions_app.exceptions import InvalidInput

INT_COUNTERS = (
    "query_count",
    "cache_hits",
    "error_count",
    "message_count",
    "tool_call_count",
    "tokens_in",
    "tokens_out",
    "event_count",
    "request_count",
)
SUMMARY_FIELDS = (
    "id",
    "user_id",
    "session_type",
    "status",
    "assets",
    "tags",
    "purpose",
    "created_at",
    "last_activity_at",
    "expires_at",
    "ended_at",
    "query_count",
)


def ts(value: float | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(float(value), tz=UTC)


def at(value: float | str) -> datetime:
    """A timestamp every live session has (created_at, last_activity_at, expires_at)."""
    return datetime.fromtimestamp(float(value), tz=UTC)


# One encoder for every event (json.dumps with options builds a new one per call).
_EVENT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def json_body(event: dict[str, Any]) -> str:
    """The event as JSON without its opening brace; the script prepends `{"seq":N,`."""
    return _EVENT_JSON.encode(event)[1:]


def event_from_json(raw: str) -> TimelineEvent:
    data = json.loads(raw)
    data["occurred_at"] = ts(data["occurred_at"])
    return TimelineEvent(**data)


def pairs(flat: list[str]) -> dict[str, str]:
    """A Redis HGETALL reply from Lua (flat list) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def counters(*items: tuple[str, float | int]) -> str:
    """Counter increments as the scripts read them: "field incr field incr ...", zeros left out."""
    return " ".join(f"{name} {value!r}" for name, value in items if value)


class LazyEvents(Sequence[TimelineEvent]):
    """Timeline events parsed from their JSON only when someone reads them."""

    def __init__(self, raw: list[str]):
        self._raw = raw
        self._parsed: list[TimelineEvent] | None = None

    def _events(self) -> list[TimelineEvent]:
        if self._parsed is None:
            self._parsed = [event_from_json(item) for item in self._raw]
        return self._parsed

    def __getitem__(self, index):
        return self._events()[index]

    def __len__(self) -> int:
        return len(self._raw)

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return repr(self._events())


def session_from_reply(reply: list) -> AnalysisSession:
    """A live session from the GET script's reply {meta, context, results, events, queries}."""
    meta, ctx, ir = (pairs(part) for part in reply[:3])
    recent = LazyEvents(reply[3])
    queries = [event_from_json(raw) for raw in reversed(reply[4])]
    loads = json.loads
    preferences = loads(meta.get("preferences") or "{}")
    # Any: spread into AnalysisSession's counter fields by name.
    counts: dict[str, Any] = {name: int(float(meta.get(name) or 0)) for name in INT_COUNTERS}
    history = AnalysisHistory(
        total_queries=counts["query_count"],
        cache_hits=counts["cache_hits"],
        errors=counts["error_count"],
        recent_events=recent,
        queries=queries,
    )
    tags = loads(meta.get("tags") or "[]")
    purpose = meta.get("purpose", "")
    metadata_text = meta.get("metadata") or "{}"
    session = AnalysisSession(
        id=meta["id"],
        user_id=meta.get("user_id", ""),
        session_type=meta["session_type"],
        status=meta["status"],
        assets=loads(meta.get("assets") or "[]"),
        tags=tags,
        purpose=purpose,
        source=meta.get("source", ""),
        device=meta.get("device", ""),
        ip=meta.get("ip") or None,
        created_at=at(meta["created_at"]),
        last_activity_at=at(meta["last_activity_at"]),
        expires_at=at(meta["expires_at"]),
        ended_at=ts(meta.get("ended_at")),
        is_live=True,
        total_execution_ms=float(meta.get("total_execution_ms") or 0),
        total_processing_time=float(meta.get("total_processing_time") or 0),
        tool_duration_ms=float(meta.get("tool_duration_ms") or 0),
        cost=Decimal(meta.get("cost") or "0").quantize(Decimal("0.000001")),
        preferences=preferences,
        metadata=loads(metadata_text),
        recent_events=recent,
        state=SessionState(
            {name: loads(value) for name, value in ctx.items()},
            {name: loads(value) for name, value in ir.items()},
            preferences,
            history,
        ),
        **counts,
    )
    session.loaded = Loaded(ctx, ir, list(tags), purpose, metadata_text)
    return session


def summary(row: list[str]) -> SessionSummary:
    values = dict(zip(SUMMARY_FIELDS, row, strict=True))
    return SessionSummary(
        id=values["id"],
        user_id=values["user_id"] or "",
        session_type=values["session_type"],
        status=values["status"],
        assets=json.loads(values["assets"] or "[]"),
        tags=json.loads(values["tags"] or "[]"),
        purpose=values["purpose"] or "",
        created_at=at(values["created_at"]),
        last_activity_at=at(values["last_activity_at"]),
        expires_at=at(values["expires_at"]),
        ended_at=ts(values["ended_at"]),
        query_count=int(values["query_count"] or 0),
        is_live=True,
    )


def cursor_encode(created_at: float, session_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at:.6f}|{session_id}".encode()).decode()


def cursor_decode(cursor: Any) -> tuple[float, str]:
    """(creation time, id) of a list cursor; InvalidInput for anything this API did not make."""
    try:
        if not isinstance(cursor, str):
            raise ValueError(cursor)
        score, session_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        value = float(score)
        # A crafted nan/inf/1e30 would reach Redis and Postgres as a bogus bound.
        if not (math.isfinite(value) and 0 <= value < 1e11):
            raise ValueError(score)
        return value, validation.session_id(session_id, "cursor")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput("cursor", "is not a cursor this API returned") from None
