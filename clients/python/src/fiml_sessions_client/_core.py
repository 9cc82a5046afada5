"""What the sync and async stores share: types, errors, the write buffer's operations, retries."""

from __future__ import annotations

import enum
import itertools
import random
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

API = "/api/v1"
RETRY_STATUSES = {429, 500, 502, 503, 504}


class SessionType(enum.StrEnum):
    EQUITY = "equity"
    CRYPTO = "crypto"
    PORTFOLIO = "portfolio"
    COMPARATIVE = "comparative"
    MACRO = "macro"
    AGENT = "agent"


class SessionStatus(enum.StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"
    EXPIRED = "expired"


@dataclass
class QueryRecord:
    """One query run in a session (the seed's QueryRecord)."""

    query_type: str
    parameters: dict[str, Any] = field(default_factory=dict)
    result_summary: str = ""
    execution_time_ms: float = 0.0
    cache_hit: bool = False
    error: str = ""


# ---- errors ---------------------------------------------------------------------------------


class ApiError(Exception):
    """The server refused a request: HTTP status, error code, the field at fault and why."""

    def __init__(self, status: int, code: str, reason: str, field: str | None = None):
        self.status = status
        self.code = code
        self.reason = reason
        self.field = field
        where = f" ({field})" if field else ""
        super().__init__(f"{status} {code}{where}: {reason}")


class SessionNotFound(ApiError, LookupError):
    pass


class SessionNotActive(ApiError):
    pass


class SessionAlreadyExists(ApiError):
    pass


class InvalidInput(ApiError, ValueError):
    pass


class StoreUnavailable(ApiError):
    pass


def is_refusal(exc: ApiError) -> bool:
    """A 4xx the same request would get again (not 408/429): retrying cannot help."""
    return 400 <= exc.status < 500 and exc.status not in (408, 429)


def error_from(status: int, body: Any) -> ApiError:
    """The typed error for an error response body `{"error": {code, field, reason}}`."""
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        detail = {"code": "http_error", "reason": str(body)[:300]}
    code = str(detail.get("code") or "http_error")
    cls = ApiError
    if status == 404:
        cls = SessionNotFound
    elif status == 409:
        cls = SessionAlreadyExists if "exist" in code else SessionNotActive
    elif status in (400, 413, 422):
        cls = InvalidInput
    elif status == 503:
        cls = StoreUnavailable
    return cls(status, code, str(detail.get("reason") or ""), detail.get("field"))


# ---- what reads return ----------------------------------------------------------------------


def _parse_time(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


class History(SimpleNamespace):
    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.total_queries if self.total_queries else 0.0

    def get_recent_queries(self, n: int = 5) -> list[SimpleNamespace]:
        """The last `n` queries among the session's recent events, oldest first."""
        return [event for event in self.recent_events if event.kind == "query"][-n:]


class Session(SimpleNamespace):
    """A session as the API returns it, with the seed's `state` and `state.history` views."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session:
        values = {name: _parse_time(value) for name, value in data.items()}
        events = [SimpleNamespace(**event) for event in values.pop("recent_events", []) or []]
        values["recent_events"] = events
        history = History(
            total_queries=values.get("query_count", 0),
            cache_hits=values.get("cache_hits", 0),
            errors=values.get("error_count", 0),
            recent_events=events,
        )
        values["state"] = SimpleNamespace(
            context=values.get("context", {}),
            intermediate_results=values.get("intermediate_results", {}),
            preferences=values.get("preferences", {}),
            history=history,
        )
        return cls(**values)


@dataclass
class SessionPage:
    items: list[Session]
    next_cursor: str | None


# ---- the write buffer -----------------------------------------------------------------------


class EventIds:
    """Unique event ids for this client: a random prefix and a counter."""

    def __init__(self):
        self.prefix = uuid.uuid4().hex[:16]
        self.counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}-{next(self.counter)}"


def query_op(session_id: str, query: QueryRecord) -> dict[str, Any]:
    return {"op": "query", "session_id": str(session_id), **asdict(query)}


def drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


@dataclass
class Retry:
    """Exponential backoff with jitter: `attempts` tries, waiting base * 2**n (at most `cap`)."""

    attempts: int = 6
    base: float = 0.2
    cap: float = 10.0

    def delays(self):
        for attempt in range(self.attempts - 1):
            yield min(self.cap, self.base * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311


@dataclass
class FlushReport:
    """What the server said about flushed writes (errors keep their operation)."""

    accepted: int = 0
    duplicate: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def refuse(self, operations: list[dict[str, Any]], exc: ApiError) -> None:
        """The server refused the whole request (4xx): each operation is reported, dropped."""
        error = {"code": exc.code, "field": exc.field, "reason": exc.reason}
        for operation in operations:
            self.errors.append(
                {
                    "event_id": operation.get("event_id"),
                    "status": "error",
                    "error": error,
                    "operation": operation,
                }
            )

    def add(self, operations: list[dict[str, Any]], body: dict[str, Any]) -> None:
        self.accepted += body.get("accepted", 0)
        self.duplicate += body.get("duplicate", 0)
        for item in body.get("items", []):
            if item.get("status") == "error":
                self.errors.append({**item, "operation": operations[item["index"]]})


def summarize(value: Any, limit: int = 200) -> str:
    """A short result summary for track_query (the return value's repr, cut)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Timer:
    """What a track_query block records; set `result_summary` or `cache_hit` inside it."""

    def __init__(self, session_id: str, query_type: str, parameters: dict[str, Any] | None):
        self.session_id = str(session_id)
        self.query_type = query_type
        self.parameters = dict(parameters or {})
        self.result_summary = ""
        self.cache_hit = False
        self.error = ""
        self._start = time.perf_counter()

    def record(self, exc: BaseException | None) -> QueryRecord:
        if exc is not None:
            self.error = f"{type(exc).__name__}: {exc}"[:500]
        return QueryRecord(
            query_type=self.query_type,
            parameters=self.parameters,
            result_summary=self.result_summary,
            execution_time_ms=(time.perf_counter() - self._start) * 1000,
            cache_hit=self.cache_hit,
            error=self.error,
        )
