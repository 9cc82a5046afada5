"""The session store: live sessions in Redis, archived ones read from Postgres.

Every write to a live session is one Lua script call: atomic, one round trip, O(1) in the
session's history length. The key layout is in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, transaction

from sessions_app import validation
from sessions_app.domain import (
    AnalysisHistory,
    AnalysisSession,
    QueryRecord,
    SessionPage,
    SessionState,
    SessionSummary,
    TimelineEvent,
    new_session_id,
)
from sessions_app.exceptions import (
    InvalidInput,
    InvalidTTL,
    QueryLimitExceeded,
    SessionNotActive,
    SessionNotFound,
    StoreUnavailable,
)
from sessions_app.models import EventKind, SessionStatus, SessionType
from sessions_app.models import Session as ArchivedSession
from sessions_app.models import SessionEvent as ArchivedEvent
from sessions_app.policies import all_effective_policies, get_effective_policy
from sessions_app.redis_client import get_redis, key

__all__ = ["QueryRecord", "SessionStore", "SessionType", "get_session_store"]

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
INT_COUNTERS = (
    "query_count",
    "cache_hits",
    "error_count",
    "message_count",
    "tool_call_count",
    "tokens_in",
    "tokens_out",
    "event_count",
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

# Status checks shared by the write scripts. Returns an error table or nil.
_GUARD = """
local function guard(m, now)
  if not m[1] then return {-1} end
  if m[1] ~= 'active' then return {-2, m[1]} end
  if tonumber(m[2]) <= tonumber(now) then return {-2, 'expired'} end
  return nil
end
"""

# KEYS: meta, due, activity, user index, type index, idempotency key
# ARGV: id, now, expires_at, redis_expire_ms, use_idempotency, idempotency_ttl, field, value...
_CREATE = """
if ARGV[5] == '1' then
  local existing = redis.call('GET', KEYS[6])
  if existing then return {0, existing} end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
if ARGV[5] == '1' then redis.call('SET', KEYS[6], ARGV[1], 'EX', ARGV[6]) end
return {1, ARGV[1]}
"""

# KEYS: meta, events, activity
# ARGV: id, now, kind, per-type query limits ("equity=1000 crypto=..."),
#       event body (JSON without its opening brace),
#       number of integer counters n, n (field, increment) pairs, then (field, float increment)...
_ADD_EVENT = (
    _GUARD
    + """
local m = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'query_count', 'redis_expire_ms',
                      'session_type')
local err = guard(m, ARGV[2])
if err then return err end
if ARGV[3] == 'query' then
  local limit = tonumber(string.match(ARGV[4], m[5] .. '=(%d+)'))
  if tonumber(m[3] or 0) >= limit then return {-4, limit} end
end
local seq = redis.call('HINCRBY', KEYS[1], 'event_count', 1) - 1
redis.call('RPUSH', KEYS[2], '{"seq":' .. seq .. ',' .. ARGV[5])
if seq == 0 then redis.call('PEXPIREAT', KEYS[2], m[4]) end  -- extend keeps it in step later
local n = tonumber(ARGV[6])
local i = 7
for _ = 1, n do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', KEYS[1], 'last_activity_at', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return {seq}
"""
)

# KEYS: meta, target hash (context or intermediate results), activity
# ARGV: id, now, field, JSON value
_SET_ENTRY = (
    _GUARD
    + """
local m = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'redis_expire_ms')
local err = guard(m, ARGV[2])
if err then return err end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('PEXPIREAT', KEYS[2], m[3])
redis.call('HSET', KEYS[1], 'last_activity_at', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return {1}
"""
)

# KEYS: meta, due, events, context, intermediate results
# ARGV: id, now, seconds to add, per-type max TTL hours ("equity=168 ..."), grace seconds
_EXTEND = (
    _GUARD
    + """
local m = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'created_at', 'session_type')
local err = guard(m, ARGV[2])
if err then return err end
local max_hours = tonumber(string.match(ARGV[4], m[4] .. '=(%d+)'))
local new = tonumber(m[2]) + tonumber(ARGV[3])
local cap = tonumber(m[3]) + max_hours * 3600
if new > cap + 0.001 then
  return {-5, string.format('%.6f', cap - tonumber(m[2])), max_hours, m[4]}
end
local expire_ms = math.floor((new + tonumber(ARGV[5])) * 1000)
redis.call('HSET', KEYS[1], 'expires_at', string.format('%.6f', new), 'redis_expire_ms', expire_ms)
redis.call('ZADD', KEYS[2], new, ARGV[1])
for i = 1, 5 do
  if i ~= 2 then redis.call('PEXPIREAT', KEYS[i], expire_ms) end
end
return {1, string.format('%.6f', new)}
"""
)

# KEYS: meta, due, activity
# ARGV: id, now, status, key prefix (for the type index named by the session's own type)
_END = """
local m = redis.call('HMGET', KEYS[1], 'status', 'session_type')
if not m[1] then return {-1} end
if m[1] ~= 'active' then return {-2, m[1]} end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'ended_at', ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', ARGV[4] .. ':idx:type:' .. m[2], ARGV[1])
return {1}
"""

# KEYS: meta, events, context, intermediate results, due, activity
# ARGV: id, key prefix. Index keys per user/type are derived from the session's own fields.
_DELETE = """
local m = redis.call('HMGET', KEYS[1], 'user_id', 'session_type')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
if m[2] then
  redis.call('ZREM', ARGV[2] .. ':idx:user:' .. m[1], ARGV[1])
  redis.call('ZREM', ARGV[2] .. ':idx:type:' .. m[2], ARGV[1])
  return 1
end
return 0
"""

# KEYS: index zset. ARGV: max score, cursor id ('' for none), limit, field names...
# Newest first; skips members at the cursor's score (within 1.5 us, the cursor's rounding) that
# were on earlier pages: equal scores come in descending id order.
_LIST_INDEX = """
local limit = tonumber(ARGV[3])
local fields = {unpack(ARGV, 4)}
local rows = {}
local offset = 0
while #rows < limit + 1 do
  local batch = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES',
                           'LIMIT', offset, limit + 1)
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    local tie = math.abs(tonumber(score) - tonumber(ARGV[1])) < 0.0000015
    if not (ARGV[2] ~= '' and tie and id >= ARGV[2]) then
      local meta_key = string.sub(KEYS[1], 1, string.find(KEYS[1], ':idx:', 1, true) - 1)
        .. ':s:' .. id
      local row = redis.call('HMGET', meta_key, unpack(fields))
      if row[1] then rows[#rows + 1] = row end
      if #rows >= limit + 1 then break end
    end
  end
  offset = offset + limit + 1
end
return rows
"""

# KEYS: meta, context, intermediate results, events. ARGV: number of recent events.
# One reply instead of a MULTI pipeline: fewer commands to encode and parse.
_GET = """
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return {} end
local n = tonumber(ARGV[1])
local events = {}
if n > 0 then events = redis.call('LRANGE', KEYS[4], -n, -1) end
return {meta, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), events}
"""

# KEYS: activity index. ARGV: offset, limit, field names...
_LIST_LIVE = """
local ids = redis.call('ZREVRANGE', KEYS[1], ARGV[1], ARGV[1] + ARGV[2] - 1)
local prefix = string.sub(KEYS[1], 1, string.find(KEYS[1], ':idx:', 1, true) - 1)
local fields = {unpack(ARGV, 3)}
local rows = {}
for _, id in ipairs(ids) do
  local row = redis.call('HMGET', prefix .. ':s:' .. id, unpack(fields))
  if row[1] then rows[#rows + 1] = row end
end
return rows
"""


def _ts(value: float | str | None) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(float(value), tz=UTC)


def _json_body(event: dict[str, Any]) -> str:
    """The event as JSON without its opening brace; the script prepends `{"seq":N,`."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)[1:]


def _event_from_json(raw: str) -> TimelineEvent:
    data = json.loads(raw)
    data["occurred_at"] = _ts(data["occurred_at"])
    return TimelineEvent(**data)


def _event_from_row(row: ArchivedEvent) -> TimelineEvent:
    return TimelineEvent(
        seq=row.seq,
        kind=row.kind,
        occurred_at=row.occurred_at,
        query_type=row.query_type,
        parameters=row.parameters,
        result_summary=row.result_summary,
        execution_ms=row.execution_ms,
        cache_hit=row.cache_hit,
        error=row.error,
        role=row.role,
        content=row.content,
        tool_name=row.tool_name,
        invocation_id=row.invocation_id,
        duration_ms=row.duration_ms,
        tokens_in=row.tokens_in,
        tokens_out=row.tokens_out,
        cost=float(row.cost),
    )


def _pairs(flat: list[str]) -> dict[str, str]:
    """A Redis HGETALL reply from Lua (flat list) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


class LazyEvents(Sequence):
    """Timeline events parsed from their JSON only when someone reads them."""

    def __init__(self, raw: list[str]):
        self._raw = raw
        self._parsed: list[TimelineEvent] | None = None

    def _events(self) -> list[TimelineEvent]:
        if self._parsed is None:
            self._parsed = [_event_from_json(item) for item in self._raw]
        return self._parsed

    def __getitem__(self, index):
        return self._events()[index]

    def __len__(self) -> int:
        return len(self._raw)

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return repr(self._events())


def _cursor_encode(created_at: float, session_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at:.6f}|{session_id}".encode()).decode()


def _cursor_decode(cursor: str) -> tuple[float, str]:
    try:
        score, session_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        value = float(score)
        # A crafted nan/inf/1e30 would reach Redis and Postgres as a bogus bound.
        if not (math.isfinite(value) and 0 <= value < 1e11):
            raise ValueError(score)
        return value, validation.session_id(session_id, "cursor")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput("cursor", "is not a cursor this API returned") from None


_session_id = validation.session_id


def _redis_errors(method):
    """Turn Redis connection failures into StoreUnavailable, so callers can answer 503."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StoreUnavailable(f"live session store (Redis) is unavailable: {exc}") from exc
        except redis.exceptions.BusyLoadingError as exc:
            raise StoreUnavailable("live session store (Redis) is loading its data") from exc

    return wrapper


class SessionStore:
    """Create, track and read sessions. Use `get_session_store()` for the shared instance."""

    def __init__(self, client: redis.Redis | None = None):
        self._client = client
        self._bound_client: redis.Redis | None = None
        self._bound_scripts: dict[str, Any] = {}

    @property
    def redis(self) -> redis.Redis:
        return self._client or get_redis()

    @property
    def _scripts(self) -> dict[str, Any]:
        """The Lua scripts registered on the current client (EVALSHA, loaded on first use)."""
        client = self.redis
        if client is not self._bound_client:
            self._bound_scripts = {
                name: client.register_script(source) for name, source in _SCRIPTS.items()
            }
            self._bound_client = client
        return self._bound_scripts

    # ---- keys -------------------------------------------------------------------------------

    @staticmethod
    def _keys(session_id: str) -> tuple[str, str, str, str]:
        meta = key("s", session_id)
        return meta, f"{meta}:ev", f"{meta}:ctx", f"{meta}:ir"

    @staticmethod
    def _raise_for(result: list, session_id: str) -> None:
        code = int(result[0])
        if code == -1:
            # Not live: an archived session is "not active" (409), anything else unknown (404).
            try:
                status = (
                    ArchivedSession.objects.filter(id=session_id)
                    .values_list("status", flat=True)
                    .first()
                )
            except DatabaseError:  # Postgres down: all the live store can say is "not here"
                status = None
            if status is not None:
                raise SessionNotActive(session_id, status)
            raise SessionNotFound(session_id)
        if code == -2:
            raise SessionNotActive(session_id, result[1])

    # ---- writes -----------------------------------------------------------------------------

    @_redis_errors
    def create_session(
        self,
        *,
        assets: list[str] | None = None,
        session_type: str = SessionType.EQUITY,
        user_id: str = "",
        ttl_hours: float | None = None,
        tags: list[str] | None = None,
        purpose: str = "",
        source: str = "",
        device: str = "",
        ip: str | None = None,
        preferences: dict | None = None,
        metadata: dict | None = None,
        idempotency_key: str | None = None,
    ) -> AnalysisSession:
        """Start a live session; with `idempotency_key`, a retry returns the first session."""
        session_type = validation.session_type(session_type)
        policy = get_effective_policy(session_type)
        if ttl_hours is None:
            ttl_hours = policy.default_ttl_hours
        ttl_hours = validation.positive_hours("ttl_hours", ttl_hours)
        if ttl_hours > policy.max_ttl_hours:
            raise InvalidTTL(
                "ttl_hours", f"must be at most {policy.max_ttl_hours} (the {session_type} max TTL)"
            )
        fields = {
            "user_id": validation.user_id(user_id),
            "session_type": session_type,
            "status": SessionStatus.ACTIVE.value,
            "assets": json.dumps(validation.assets(assets)),
            "tags": json.dumps(validation.tags(tags)),
            "purpose": validation.text("purpose", purpose, validation.MAX_PURPOSE_LENGTH),
            "source": validation.text("source", source, validation.MAX_SHORT_TEXT),
            "device": validation.text("device", device, validation.MAX_SHORT_TEXT),
            "ip": validation.ip_address(ip) or "",
            "preferences": validation.json_payload(
                "preferences", preferences or {}, require_dict=True
            ),
            "metadata": validation.json_payload("metadata", metadata or {}, require_dict=True),
        }
        if idempotency_key is not None:
            idempotency_key = validation.text(
                "idempotency_key", idempotency_key, validation.MAX_NAME_LENGTH, required=True
            )
        session_id = new_session_id()
        now = time.time()
        expires_at = now + ttl_hours * 3600
        redis_expire_ms = int((expires_at + settings.SESSION_REDIS_GRACE_HOURS * 3600) * 1000)
        # Counters and empty optional fields are left out: absent reads as zero / empty.
        hash_fields = {name: value for name, value in fields.items() if value not in ("", "{}")}
        hash_fields.update(
            id=session_id,
            created_at=f"{now:.6f}",
            last_activity_at=f"{now:.6f}",
            expires_at=f"{expires_at:.6f}",
            redis_expire_ms=redis_expire_ms,
        )
        meta = key("s", session_id)
        result = self._scripts["create"](
            keys=[
                meta,
                key("idx", "due"),
                key("idx", "activity"),
                key("idx", "user", fields["user_id"]),
                key("idx", "type", session_type),
                key("idem", idempotency_key or "-"),
            ],
            args=[
                session_id,
                f"{now:.6f}",
                f"{expires_at:.6f}",
                redis_expire_ms,
                "1" if idempotency_key else "0",
                IDEMPOTENCY_TTL_SECONDS,
                *[item for pair in hash_fields.items() for item in pair],
            ],
        )
        if int(result[0]) == 0:  # an earlier request with this idempotency key won
            existing = self.get_session(result[1])
            if existing is None:
                raise SessionNotFound(result[1])
            return existing
        created = _ts(hash_fields["created_at"])
        preferences = json.loads(fields["preferences"])
        return AnalysisSession(
            id=session_id,
            user_id=fields["user_id"],
            session_type=session_type,
            status=SessionStatus.ACTIVE.value,
            assets=json.loads(fields["assets"]),
            tags=json.loads(fields["tags"]),
            purpose=fields["purpose"],
            source=fields["source"],
            device=fields["device"],
            ip=fields["ip"] or None,
            created_at=created,
            last_activity_at=created,
            expires_at=_ts(hash_fields["expires_at"]),
            is_live=True,
            preferences=preferences,
            metadata=json.loads(fields["metadata"]),
            state=SessionState(preferences=preferences),
        )

    def _add_event(self, session_id: Any, kind: str, event: dict, ints: dict, floats: dict) -> int:
        session_id = _session_id(session_id)
        now = time.time()
        event["occurred_at"] = round(now, 6)
        int_pairs = [item for pair in ints.items() if pair[1] for item in pair]
        float_pairs = [item for pair in floats.items() if pair[1] for item in pair]
        meta, events, _, _ = self._keys(session_id)
        result = self._scripts["add_event"](
            keys=[meta, events, key("idx", "activity")],
            args=[
                session_id,
                f"{now:.6f}",
                kind,
                _per_type_limits("max_queries_per_session"),
                _json_body(event),
                len(int_pairs) // 2,
                *int_pairs,
                *float_pairs,
            ],
        )
        self._raise_for(result, session_id)
        if int(result[0]) == -4:
            raise QueryLimitExceeded(session_id, int(result[1]))
        return int(result[0])

    @_redis_errors
    def add_query(self, session_id: Any, query: QueryRecord) -> int:
        """Append a query; returns its timeline position. QueryLimitExceeded past the limit."""
        if not isinstance(query, QueryRecord):
            raise InvalidInput("query", "must be a QueryRecord")
        execution_ms = validation.non_negative(
            "execution_time_ms", query.execution_time_ms, maximum=validation.MAX_DURATION_MS
        )
        error = validation.text("error", query.error, validation.MAX_SUMMARY_LENGTH)
        cache_hit = query.cache_hit
        if not isinstance(cache_hit, bool):
            raise InvalidInput("cache_hit", "must be true or false")
        event = {
            "kind": EventKind.QUERY.value,
            "query_type": validation.query_type(query.query_type),
            "parameters": json.loads(
                validation.json_payload("parameters", query.parameters or {}, require_dict=True)
            ),
            "result_summary": validation.text(
                "result_summary", query.result_summary, validation.MAX_SUMMARY_LENGTH
            ),
            "execution_ms": execution_ms,
            "cache_hit": cache_hit,
            "error": error,
        }
        return self._add_event(
            session_id,
            EventKind.QUERY.value,
            event,
            {"query_count": 1, "cache_hits": int(cache_hit), "error_count": int(bool(error))},
            {"total_execution_ms": execution_ms},
        )

    @_redis_errors
    def add_message(
        self,
        session_id: Any,
        *,
        role: str,
        content: str,
        tool_name: str = "",
        invocation_id: str = "",
    ) -> int:
        """Append a conversation message (user, assistant, tool or system); returns its position."""
        event = {
            "kind": EventKind.MESSAGE.value,
            "role": validation.role(role),
            "content": validation.text(
                "content", content, validation.MAX_CONTENT_LENGTH, required=True
            ),
            "tool_name": validation.text("tool_name", tool_name, validation.MAX_NAME_LENGTH),
            "invocation_id": validation.text(
                "invocation_id", invocation_id, validation.MAX_NAME_LENGTH
            ),
        }
        return self._add_event(session_id, EventKind.MESSAGE.value, event, {"message_count": 1}, {})

    @_redis_errors
    def record_tool_call(
        self,
        session_id: Any,
        *,
        tool_name: str,
        invocation_id: str = "",
        duration_ms: float | None = None,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost: float = 0.0,
        error: str = "",
    ) -> int:
        """Append a tool call with its duration, tokens and cost; returns its position."""
        tokens_in = validation.non_negative("tokens_in", tokens_in, integer=True)
        tokens_out = validation.non_negative("tokens_out", tokens_out, integer=True)
        cost = validation.non_negative("cost", cost, maximum=validation.MAX_COST)
        error = validation.text("error", error, validation.MAX_SUMMARY_LENGTH)
        event = {
            "kind": EventKind.TOOL_CALL.value,
            "tool_name": validation.text(
                "tool_name", tool_name, validation.MAX_NAME_LENGTH, required=True
            ),
            "invocation_id": validation.text(
                "invocation_id", invocation_id, validation.MAX_NAME_LENGTH
            ),
            "duration_ms": None
            if duration_ms is None
            else validation.non_negative(
                "duration_ms", duration_ms, maximum=validation.MAX_DURATION_MS
            ),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost": cost,
            "error": error,
        }
        return self._add_event(
            session_id,
            EventKind.TOOL_CALL.value,
            event,
            {
                "tool_call_count": 1,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "error_count": int(bool(error)),
            },
            {"cost": cost},
        )

    def _set_entry(self, session_id: Any, suffix: str, field: str, entry: Any, value: Any) -> None:
        session_id = _session_id(session_id)
        entry = validation.context_key(field, entry)
        encoded = validation.json_payload("value", value)
        meta = key("s", session_id)
        result = self._scripts["set_entry"](
            keys=[meta, f"{meta}:{suffix}", key("idx", "activity")],
            args=[session_id, f"{time.time():.6f}", entry, encoded],
        )
        self._raise_for(result, session_id)

    @_redis_errors
    def update_context(self, session_id: Any, context_key: str, value: Any) -> None:
        """Set one context key to a JSON value, leaving the other keys as they are."""
        self._set_entry(session_id, "ctx", "key", context_key, value)

    @_redis_errors
    def store_intermediate_result(self, session_id: Any, result_key: str, value: Any) -> None:
        """Set one intermediate result to a JSON value."""
        self._set_entry(session_id, "ir", "key", result_key, value)

    @_redis_errors
    def extend_session(self, session_id: Any, hours: float = 24) -> datetime:
        """Push the expiry back by `hours`; InvalidTTL if that passes the type's max TTL."""
        session_id = _session_id(session_id)
        hours = validation.positive_hours("hours", hours)
        meta, events, context, results = self._keys(session_id)
        result = self._scripts["extend"](
            keys=[meta, key("idx", "due"), events, context, results],
            args=[
                session_id,
                f"{time.time():.6f}",
                hours * 3600,
                _per_type_limits("max_ttl_hours"),
                settings.SESSION_REDIS_GRACE_HOURS * 3600,
            ],
        )
        self._raise_for(result, session_id)
        if int(result[0]) == -5:
            allowed = max(float(result[1]) / 3600, 0)
            raise InvalidTTL(
                "hours",
                f"would pass the {result[2]} h max TTL of {result[3]} sessions; "
                f"at most {allowed:.2f} more hours allowed",
            )
        return _ts(result[1])

    @_redis_errors
    def end_session(
        self, session_id: Any, status: str = SessionStatus.COMPLETED, *, archive: bool = True
    ) -> AnalysisSession:
        """End a live session (completed, failed or abandoned) and archive it right away.

        If Postgres is unavailable the session stays in Redis, due, and the next cleanup run
        archives it.
        """
        session_id = _session_id(session_id)
        status = validation.end_status(status)
        result = self._scripts["end"](
            keys=[key("s", session_id), key("idx", "due"), key("idx", "activity")],
            args=[session_id, f"{time.time():.6f}", status, settings.SESSION_REDIS_PREFIX],
        )
        self._raise_for(result, session_id)
        if archive:
            from sessions_app import archive as archiver

            # On failure it stays due in Redis and cleanup_expired_sessions retries.
            with contextlib.suppress(DatabaseError):
                archiver.archive_session(session_id)
        session = self.get_session(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    @_redis_errors
    def delete_session(self, session_id: Any) -> bool:
        """Delete a session wherever it is (Redis and Postgres); True if something was deleted."""
        session_id = _session_id(session_id)
        meta, events, context, results = self._keys(session_id)
        live = self._scripts["delete"](
            keys=[meta, events, context, results, key("idx", "due"), key("idx", "activity")],
            args=[session_id, settings.SESSION_REDIS_PREFIX],
        )
        with transaction.atomic():
            # Events first, by the (session, seq) index; no Python-level cascade.
            ArchivedEvent.objects.filter(session_id=session_id).delete()
            archived, _ = ArchivedSession.objects.filter(id=session_id).delete()
        return bool(live) or bool(archived)

    # ---- reads ------------------------------------------------------------------------------

    @_redis_errors
    def get_session(self, session_id: Any, recent_events: int = 20) -> AnalysisSession | None:
        """The session, live from Redis, else archived from Postgres, else None."""
        session_id = _session_id(session_id)
        meta, events, context, results = self._keys(session_id)
        reply = self._scripts["get"](
            keys=[meta, context, results, events], args=[max(int(recent_events), 0)]
        )
        if reply:
            meta_values, ctx, ir = (_pairs(part) for part in reply[:3])
            return self._session_from_meta(meta_values, LazyEvents(reply[3]), ctx, ir)
        return self.get_archived_session(session_id, recent_events)

    def _session_from_meta(
        self, meta: dict[str, str], recent: list[TimelineEvent], ctx: dict, ir: dict
    ) -> AnalysisSession:
        loads = json.loads
        context = {name: loads(value) for name, value in ctx.items()}
        intermediate = {name: loads(value) for name, value in ir.items()}
        preferences = loads(meta.get("preferences") or "{}")
        counters = {name: int(float(meta.get(name) or 0)) for name in INT_COUNTERS}
        history = AnalysisHistory(
            total_queries=counters["query_count"],
            cache_hits=counters["cache_hits"],
            errors=counters["error_count"],
            recent_events=recent,
        )
        return AnalysisSession(
            id=meta["id"],
            user_id=meta.get("user_id", ""),
            session_type=meta["session_type"],
            status=meta["status"],
            assets=loads(meta.get("assets") or "[]"),
            tags=loads(meta.get("tags") or "[]"),
            purpose=meta.get("purpose", ""),
            source=meta.get("source", ""),
            device=meta.get("device", ""),
            ip=meta.get("ip") or None,
            created_at=_ts(meta["created_at"]),
            last_activity_at=_ts(meta["last_activity_at"]),
            expires_at=_ts(meta["expires_at"]),
            ended_at=_ts(meta.get("ended_at")),
            is_live=True,
            total_execution_ms=float(meta.get("total_execution_ms") or 0),
            cost=Decimal(meta.get("cost") or "0").quantize(Decimal("0.000001")),
            preferences=preferences,
            metadata=loads(meta.get("metadata") or "{}"),
            recent_events=recent,
            state=SessionState(context, intermediate, preferences, history),
            **counters,
        )

    def get_archived_session(
        self, session_id: Any, recent_events: int = 20
    ) -> AnalysisSession | None:
        """The session from Postgres only (also when Redis is down), else None."""
        session_id = _session_id(session_id)
        row = ArchivedSession.objects.filter(id=session_id).first()
        if row is None:
            return None
        recent = []
        if recent_events > 0:
            rows = ArchivedEvent.objects.filter(session_id=session_id).order_by("-seq")
            recent = [_event_from_row(event) for event in reversed(rows[:recent_events])]
        history = AnalysisHistory(row.query_count, row.cache_hits, row.error_count, recent)
        event_count = row.query_count + row.message_count + row.tool_call_count
        return AnalysisSession(
            id=row.id,
            user_id=row.user_id,
            session_type=row.session_type,
            status=row.status,
            assets=row.assets,
            tags=row.tags,
            purpose=row.purpose,
            source=row.source,
            device=row.device,
            ip=row.ip,
            created_at=row.created_at,
            last_activity_at=row.last_activity_at,
            expires_at=row.expires_at,
            ended_at=row.ended_at,
            archived_at=row.archived_at,
            is_live=False,
            query_count=row.query_count,
            cache_hits=row.cache_hits,
            error_count=row.error_count,
            message_count=row.message_count,
            tool_call_count=row.tool_call_count,
            total_execution_ms=row.total_execution_ms,
            tokens_in=row.tokens_in,
            tokens_out=row.tokens_out,
            cost=row.cost,
            event_count=event_count,
            preferences=row.preferences,
            metadata=row.metadata,
            recent_events=recent,
            state=SessionState(row.context, row.intermediate_results, row.preferences, history),
        )

    @_redis_errors
    def get_timeline(
        self, session_id: Any, offset: int = 0, limit: int = 50
    ) -> tuple[list[TimelineEvent], int]:
        """A page of the session's timeline in order, and the total number of events."""
        session_id = _session_id(session_id)
        if offset < 0:
            raise InvalidInput("offset", "must be zero or more")
        if not 1 <= limit <= 500:
            raise InvalidInput("limit", "must be between 1 and 500")
        meta, events, _, _ = self._keys(session_id)
        pipe = self.redis.pipeline(transaction=True)
        # `status`, not `event_count`: a live session without events has no counter yet.
        pipe.hmget(meta, "status", "event_count")
        pipe.lrange(events, offset, offset + limit - 1)
        (status, count), raw_events = pipe.execute()
        if status is not None:
            return [_event_from_json(raw) for raw in raw_events], int(count or 0)
        row = (
            ArchivedSession.objects.filter(id=session_id)
            .values("query_count", "message_count", "tool_call_count")
            .first()
        )
        if row is None:
            raise SessionNotFound(session_id)
        rows = ArchivedEvent.objects.filter(
            session_id=session_id, seq__gte=offset, seq__lt=offset + limit
        ).order_by("seq")
        return [_event_from_row(event) for event in rows], sum(row.values())

    @staticmethod
    def _summary(row: list[str]) -> SessionSummary:
        values = dict(zip(SUMMARY_FIELDS, row, strict=True))
        return SessionSummary(
            id=values["id"],
            user_id=values["user_id"] or "",
            session_type=values["session_type"],
            status=values["status"],
            assets=json.loads(values["assets"] or "[]"),
            tags=json.loads(values["tags"] or "[]"),
            purpose=values["purpose"] or "",
            created_at=_ts(values["created_at"]),
            last_activity_at=_ts(values["last_activity_at"]),
            expires_at=_ts(values["expires_at"]),
            ended_at=_ts(values["ended_at"]),
            query_count=int(values["query_count"] or 0),
            is_live=True,
        )

    @_redis_errors
    def list_user_sessions(
        self,
        user_id: str,
        include_archived: bool = False,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        """A user's sessions, newest first, `limit` per page; pass `next_cursor` for the next."""
        user_id = validation.user_id(user_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
            raise InvalidInput("limit", "must be a whole number between 1 and 500")
        max_score, after_id = _cursor_decode(cursor) if cursor else (None, "")
        rows = self._scripts["list_index"](
            keys=[key("idx", "user", user_id)],
            args=[
                # A hair above the cursor: equal-score rows are filtered by id in the script.
                "+inf" if max_score is None else f"{max_score + 1e-6:.6f}",
                after_id,
                limit,
                *SUMMARY_FIELDS,
            ],
        )
        items = [self._summary(row) for row in rows]
        if include_archived:
            items = self._merge_archived(items, user_id, limit, max_score, after_id)
        has_more = len(items) > limit
        items = items[:limit]
        next_cursor = None
        if has_more:
            last = items[-1]
            next_cursor = _cursor_encode(last.created_at.timestamp(), str(last.id))
        return SessionPage(items=items, next_cursor=next_cursor)

    @staticmethod
    def _merge_archived(
        live: list[SessionSummary], user_id: str, limit: int, max_score, after_id: str
    ) -> list[SessionSummary]:
        from django.db.models import Q

        query = ArchivedSession.objects.filter(user_id=user_id)
        if max_score is not None:
            before = datetime.fromtimestamp(max_score, tz=UTC)
            query = query.filter(Q(created_at__lt=before) | Q(created_at=before, id__lt=after_id))
        archived = [
            SessionSummary(**row, is_live=False)
            for row in query.order_by("-created_at", "-id").values(*SUMMARY_FIELDS)[: limit + 1]
        ]
        live_ids = {item.id for item in live}
        merged = live + [item for item in archived if item.id not in live_ids]
        merged.sort(key=lambda item: (item.created_at, str(item.id)), reverse=True)
        return merged

    @_redis_errors
    def list_live_sessions(self, limit: int = 50, offset: int = 0) -> list[SessionSummary]:
        """Active sessions in Redis, most recent activity first."""
        rows = self._scripts["list_live"](
            keys=[key("idx", "activity")], args=[offset, limit, *SUMMARY_FIELDS]
        )
        return [self._summary(row) for row in rows]

    @_redis_errors
    def live_counts(self) -> dict[str, Any]:
        """{"total": active sessions, "by_type": {type: active sessions}} in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(key("idx", "activity"))
        for session_type in SessionType.values:
            pipe.zcard(key("idx", "type", session_type))
        total, *by_type = pipe.execute()
        return {"total": total, "by_type": dict(zip(SessionType.values, by_type, strict=True))}

    # ---- archive (the work is in archive.py) ------------------------------------------------

    def archive_session(self, session_id: Any) -> bool:
        """Move one session to Postgres now (ends it as expired if it is still active)."""
        from sessions_app import archive as archiver

        return archiver.archive_session(_session_id(session_id))

    def cleanup_expired_sessions(self, now: float | None = None) -> dict[str, int]:
        """Archive every expired, idle or ended session; returns what it did."""
        from sessions_app import archive as archiver

        return archiver.archive_due_sessions(now=now)


_SCRIPTS = {
    "create": _CREATE,
    "add_event": _ADD_EVENT,
    "set_entry": _SET_ENTRY,
    "extend": _EXTEND,
    "end": _END,
    "delete": _DELETE,
    "list_index": _LIST_INDEX,
    "list_live": _LIST_LIVE,
    "get": _GET,
}


_limits_cache: dict[str, Any] = {}


def _per_type_limits(field: str) -> str:
    """One policy field for every type as "equity=1000 crypto=1000 ...", read by the scripts."""
    policies = all_effective_policies()
    if _limits_cache.get("policies") is not policies:  # reloaded: start over
        _limits_cache.clear()
        _limits_cache["policies"] = policies
    text = _limits_cache.get(field)
    if text is None:
        text = " ".join(f"{name}={getattr(policy, field)}" for name, policy in policies.items())
        _limits_cache[field] = text
    return text


_store: SessionStore | None = None


def get_session_store() -> SessionStore:
    """The process-wide store (its Redis client and scripts are shared)."""
    global _store
    if _store is None:
        _store = SessionStore()
    return _store
