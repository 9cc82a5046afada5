"""Every store operation, written once as a generator that yields what it needs done.

An operation yields `Call`s (one Lua script call), `Calls` (several, pipelined), `Db` (an
archived read from archived.py) and `Policies` (the effective retention policies); the sync
front-end (`SessionStore`) and the async one (`AsyncSessionStore`) run the same generators,
so both have exactly the same behaviour, and each Redis step is one round trip.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from sessions_app import validation
from sessions_app.domain import (
    AnalysisSession,
    QueryRecord,
    SessionList,
    SessionState,
    SessionSummary,
    TimelineEvent,
    new_session_id,
)
from sessions_app.exceptions import (
    EventLimitExceeded,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidTTL,
    QueryLimitExceeded,
    SessionAlreadyExists,
    SessionLimitExceeded,
    SessionNotActive,
    SessionNotFound,
    StateTooLarge,
    StoreUnavailable,
)
from sessions_app.models import EventKind, SessionStatus, SessionType
from sessions_app.store import codec, keys, scripts
from sessions_app.store.codec import SUMMARY_FIELDS, at, ts

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
# Queries read with a session, so get_recent_queries(n) needs no second call for small n.
LOADED_QUERIES = 20
# Live rows a filtered list_sessions looks at per index (it filters them in Python).
LIST_SCAN = 500
# Sessions live_totals sums at most: one script call reading this many hashes, and Python
# decoding ~5,500 fields, costs a few ms (17 ms at 1,000 on a loaded machine); past it the
# totals say they are partial.
LIVE_TOTALS_LIMIT = 500
# The counters live_totals sums; `session_type` first (a row without it is gone).
LIVE_FLOAT_TOTALS = ("cost", "total_processing_time")
LIVE_TOTAL_FIELDS = (
    "session_type",
    *(name for name in codec.INT_COUNTERS if name != "event_count"),
    *LIVE_FLOAT_TOTALS,
)
# Meta fields update_session_metadata / update_session(id, session) may set.
META_FIELDS = ("tags", "purpose", "metadata")


@dataclass
class Call:
    script: str
    keys: list[str]
    args: list[Any] = field(default_factory=list)


@dataclass
class Calls:
    calls: list[Call]


@dataclass
class Db:
    name: str  # archived.<name>, or archived.a<name> in async code
    args: tuple


@dataclass
class Policies:
    pass


@dataclass
class Command:
    """One plain Redis command (a read no script is needed for), e.g. ZCOUNT."""

    name: str
    args: tuple


@dataclass
class Archive:
    session_id: str


Op = Generator[Any, Any, Any]

_limits_cache: dict[str, Any] = {}


def per_type(policies: dict, name: str) -> str:
    """One policy field for every type as "equity=1000 crypto=1000 ...", read by the scripts."""
    if _limits_cache.get("policies") is not policies:  # reloaded: start over
        _limits_cache.clear()
        _limits_cache["policies"] = policies
    text = _limits_cache.get(name)
    if text is None:
        text = " ".join(
            f"{type_}={int(getattr(policy, name, 0) or 0)}" for type_, policy in policies.items()
        )
        _limits_cache[name] = text
    return text


def _now() -> float:
    return time.time()


def _hours(name: str, value: Any) -> float:
    hours = validation.positive_hours(name, value)
    floor = settings.SESSION_MIN_TTL_SECONDS
    if hours * 3600 < floor:
        raise InvalidTTL(name, f"must be at least {floor} seconds ({floor / 3600:.4g} hours)")
    return hours


def _moment(name: str, value: Any) -> datetime | None:
    """A time filter: an aware datetime (naive ones are UTC), or epoch seconds; None: none."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidInput(name, "must be a time within range") from None
    raise InvalidInput(name, "must be a datetime or epoch seconds")


def _event_id(value: Any) -> str:
    """A caller's event id (checked), or a generated one."""
    if value is None:
        return str(uuid.uuid4())
    return validation.text("event_id", value, validation.MAX_NAME_LENGTH, required=True)


def _checked_parameters(parameters: Any) -> dict:
    value = parameters or {}
    validation.json_payload("parameters", value, require_dict=True)
    return value


def _query_event(query: Any) -> tuple[str, str, str, str, str]:
    """(event id, kind, JSON body, integer counters, float counters) of a query."""
    if not isinstance(query, QueryRecord):
        raise InvalidInput("query", "must be a QueryRecord")
    execution_ms = validation.non_negative(
        "execution_time_ms", query.execution_time_ms or 0, maximum=validation.MAX_DURATION_MS
    )
    error = validation.text("error", query.error, validation.MAX_SUMMARY_LENGTH)
    cache_hit = query.cache_hit
    if not isinstance(cache_hit, bool):
        raise InvalidInput("cache_hit", "must be true or false")
    event_id = _event_id(query.event_id)
    query_type = validation.query_type(query.query_type)
    event = {
        "kind": EventKind.QUERY.value,
        "query_type": query_type,
        # Checked and encodable (json_payload); encoded once, with the event.
        "parameters": _checked_parameters(query.parameters),
        "result_summary": validation.text(
            "result_summary", query.result_summary or "", validation.MAX_SUMMARY_LENGTH
        ),
        "execution_ms": execution_ms,
        "cache_hit": cache_hit,
        "error": error,
        "event_id": event_id,
        "occurred_at": round(_now(), 6),
    }
    ints = codec.counters(
        ("query_count", 1),
        ("cache_hits", int(cache_hit)),
        ("error_count", int(bool(error))),
        # Per-type counts the archive copies to Session.query_type_counts.
        (scripts.QUERY_TYPE_FIELD + query_type, 1),
    )
    return (
        event_id,
        "query",
        codec.json_body(event),
        ints,
        codec.counters(("total_execution_ms", execution_ms)),
    )


# What APPLY answers for an event instead of its position.
DUPLICATE, COUNTED = -1, -2
# The ARGV positions of APPLY (scripts.APPLY): the session id, its number of events, and the
# first event; each event takes EVENT_WIDTH arguments; after the events, 5 section counts
# (with their items) and the integer and float counters.
_ARG_ID, _ARG_COUNT, _ARG_EVENTS, EVENT_WIDTH = 0, 5, 6, 5
_NO_SECTIONS = [0, 0, 0, 0, 0, "", ""]


def _apply_call(
    session_id: str,
    policies: dict,
    events: Sequence[tuple] = (),
    context_set: dict[str, str] | None = None,
    context_removed: Sequence[str] = (),
    results_set: dict[str, str] | None = None,
    results_removed: Sequence[str] = (),
    meta_set: dict[str, str] | None = None,
    ints: str = "",
    floats: str = "",
) -> Call:
    args: list[Any] = [
        session_id,
        f"{_now():.6f}",
        per_type(policies, "max_queries_per_session"),
        per_type(policies, "max_events_per_session"),
        per_type(policies, "max_state_bytes"),
        len(events),
    ]
    for event in events:
        args += event
    if not (context_set or context_removed or results_set or results_removed or meta_set):
        args += _NO_SECTIONS[:5]
        args += [ints, floats]
        return Call("apply", keys.apply_keys(session_id), args)
    for mapping in (context_set, context_removed, results_set, results_removed, meta_set):
        if isinstance(mapping, dict):
            args.append(len(mapping))
            for name, value in mapping.items():
                args += [name, value]
        else:
            args.append(len(mapping or ()))
            args += list(mapping or ())
    args += [ints, floats]
    return Call("apply", keys.apply_keys(session_id), args)


def _events_only(call: Call) -> bool:
    """An APPLY that only appends events (no context, results, meta or loose counters)."""
    if call.script != "apply":
        return False
    tail = call.args[_ARG_EVENTS + EVENT_WIDTH * int(call.args[_ARG_COUNT]) :]
    return tail == _NO_SECTIONS


def coalesce(calls: Sequence[Call]) -> tuple[list[Call], list[list[int]]]:
    """Fewer script calls for the same work: the event-only APPLYs of one session become one
    APPLY with all their events, in order (each event still deduplicated and answered on its
    own). Returns the calls to run and, for each, the indexes of the calls it stands for.

    The merged call runs all-or-nothing: when it refuses (a limit), `split` says so and the
    caller runs the originals one by one, so each gets its own answer."""
    out: list[Call] = []
    groups: list[list[int]] = []
    pending: dict[str, tuple[int, list[Any]]] = {}  # session id -> (its slot in out, events)
    for index, call in enumerate(calls):
        if not _events_only(call):
            out.append(call)
            groups.append([index])
            continue
        n = int(call.args[_ARG_COUNT])
        events = call.args[_ARG_EVENTS : _ARG_EVENTS + EVENT_WIDTH * n]
        slot = pending.get(call.args[_ARG_ID])
        if slot is None:
            pending[call.args[_ARG_ID]] = (len(out), events)
            out.append(call)
            groups.append([index])
        else:
            slot[1].extend(events)
            groups[slot[0]].append(index)
    for at_, events in pending.values():
        first = out[at_]
        if len(groups[at_]) > 1:
            head = [*first.args[:_ARG_COUNT], len(events) // EVENT_WIDTH]
            out[at_] = Call("apply", first.keys, [*head, *events, *_NO_SECTIONS])
    return out, groups


def split(reply: Any, calls: Sequence[Call]) -> list[Any] | None:
    """The replies of `calls` (merged by `coalesce`) from the merged call's `reply`; None when
    the merged call refused on a limit that the originals, one by one, may each pass or not."""
    if len(calls) == 1:
        return [reply]
    code = int(reply[0])
    if code in (-1, -2):  # missing or not active: the same answer for each
        return [reply] * len(calls)
    if code != 1:
        return None
    replies, at_ = [], 1
    for call in calls:
        n = int(call.args[_ARG_COUNT])
        replies.append([1, *reply[at_ : at_ + n]])
        at_ += n
    return replies


class StoreCore:
    """The operations; see SessionStore (sync) and AsyncSessionStore (async) for their use."""

    # ---- helpers ---------------------------------------------------------------------------

    def _bind(self, session: AnalysisSession | None) -> AnalysisSession | None:
        """Let the session's history fetch older queries through this store."""
        return session

    def _not_live(self, session_id: str) -> Op:
        """Raise for a session that is not in Redis: archived -> not active, else not found."""
        try:
            status = yield Db("status", (session_id,))
        except DatabaseError:  # Postgres down: all the live store can say is "not here"
            status = None
        if status is not None:
            raise SessionNotActive(session_id, status)
        raise SessionNotFound(session_id)

    def _check(self, result: list, session_id: str) -> Op:
        code = int(result[0])
        if code == -1:
            yield from self._not_live(session_id)
        if code == -2:
            raise SessionNotActive(session_id, result[1])
        if code == -4:
            raise QueryLimitExceeded(session_id, int(result[1]))
        if code == -9:
            raise EventLimitExceeded(session_id, int(result[1]))
        if code == -10:
            raise StateTooLarge(session_id, int(result[1]))
        return result

    def _check_caps(self, user_id: str, user_cap: int, total_cap: int) -> Op:
        """SessionLimitExceeded when the live sessions of this user, or in all, are at their
        cap, counted over every shard."""
        replies = yield Calls(
            [Call("counts", [keys.activity(s), keys.user(s, user_id)]) for s in keys.shards()]
        )
        total = sum(int(reply[0]) for reply in replies)
        mine = sum(int(reply[1]) for reply in replies)
        if user_cap and mine >= user_cap:
            raise SessionLimitExceeded("user", user_cap)
        if total_cap and total >= total_cap:
            raise SessionLimitExceeded("total", total_cap)

    def _summaries(self, session_ids: list[str]) -> Op:
        """{id: SessionSummary} of those ids still live: one ROWS call per shard, pipelined."""
        groups = _by_shard(session_ids)
        if not groups:
            return {}
        replies = yield Calls(
            [Call("rows", [keys.meta(i) for i in group], list(SUMMARY_FIELDS)) for group in groups]
        )
        return {
            session_id: codec.summary(row)
            for group, rows in zip(groups, replies, strict=True)
            for session_id, row in zip(group, rows, strict=True)
            if row[0] is not None
        }

    def _top(self, indexes: dict[int, str], count: int) -> Op:
        """[(id, score)]: the `count` highest entries over these per-shard indexes, highest
        first (one INDEX_TOP call per shard, pipelined, merged)."""
        replies = yield Calls([Call("index_top", [index], [count]) for index in indexes.values()])
        entries = [
            (reply[i], float(reply[i + 1])) for reply in replies for i in range(0, len(reply), 2)
        ]
        entries.sort(key=lambda entry: (entry[1], entry[0]), reverse=True)
        return entries[:count]

    def _newest(
        self, indexes: dict[int, str], want: int, max_score: float | None = None, after_id: str = ""
    ) -> Op:
        """Up to `want` live summaries from these per-shard indexes, highest score first (equal
        scores by id, descending), after the cursor (max_score, after_id). Index entries whose
        session is gone are skipped, reading on past them."""
        found: list[SessionSummary] = []
        while True:
            # A hair above the cursor: equal-score rows are filtered by id in the script.
            top = "+inf" if max_score is None else f"{max_score + 1e-6:.6f}"
            replies = yield Calls(
                [Call("index_page", [index], [top, after_id, want]) for index in indexes.values()]
            )
            entries = [
                (reply[i], float(reply[i + 1]))
                for reply in replies
                for i in range(0, len(reply), 2)
            ]
            entries.sort(key=lambda entry: (entry[1], entry[0]), reverse=True)
            entries = entries[: want - len(found)]
            if not entries:
                return found
            rows = yield from self._summaries([session_id for session_id, _ in entries])
            found += [rows[i] for i, _ in entries if i in rows]
            if len(found) >= want or len(rows) == len(entries):
                return found
            max_score, after_id = entries[-1][1], entries[-1][0]

    def _apply(self, session_id: str, **changes: Any) -> Op:
        """Run one APPLY; per event its position, None for a duplicate event id (with
        `raw=True`, the script's numbers: DUPLICATE, COUNTED for a write without a timeline
        entry)."""
        raw = bool(changes.pop("raw", False))
        policies = yield Policies()
        result = yield _apply_call(session_id, policies, **changes)
        yield from self._check(result, session_id)
        if raw:
            return [int(seq) for seq in result[1:]]
        return [None if int(seq) < 0 else int(seq) for seq in result[1:]]

    # ---- writes ----------------------------------------------------------------------------

    def create_session(
        self,
        assets: list[str] | None = None,
        session_type: str | None = None,
        user_id: str | None = "",
        ttl_hours: float | None = None,
        tags: list[str] | None = None,
        purpose: str | None = "",
        source: str = "",
        device: str = "",
        ip: str | None = None,
        preferences: dict | None = None,
        metadata: dict | None = None,
        idempotency_key: str | None = None,
        *,
        session_id: str | None = None,
        idempotency_scope: str = "",
    ) -> Op:
        """Start a live session (type `agent` unless given). `session_id` picks the id
        (SessionAlreadyExists if live or archived under it); with `idempotency_key` a retry
        of the same request returns the first session (IdempotencyKeyReused if it differs)."""
        session_type = validation.session_type(session_type or SessionType.AGENT)
        policies = yield Policies()
        policy = policies[session_type]
        if ttl_hours is None:
            ttl_hours = policy.default_ttl_hours
        ttl_hours = _hours("ttl_hours", ttl_hours)
        if ttl_hours > policy.max_ttl_hours:
            raise InvalidTTL(
                "ttl_hours", f"must be at most {policy.max_ttl_hours} (the {session_type} max TTL)"
            )
        fields = {
            "user_id": validation.user_id(user_id or ""),
            "session_type": session_type,
            "status": SessionStatus.ACTIVE.value,
            "assets": json.dumps(validation.assets(assets)),
            "tags": json.dumps(validation.tags(tags)),
            "purpose": validation.text("purpose", purpose or "", validation.MAX_PURPOSE_LENGTH),
            "source": validation.text("source", source, validation.MAX_SHORT_TEXT),
            "device": validation.text("device", device, validation.MAX_SHORT_TEXT),
            "ip": validation.ip_address(ip) or "",
            "preferences": validation.json_payload(
                "preferences", preferences or {}, require_dict=True
            ),
            "metadata": validation.json_payload("metadata", metadata or {}, require_dict=True),
        }
        chosen = session_id is not None
        if idempotency_key is not None:
            idempotency_key = validation.text(
                "idempotency_key", idempotency_key, validation.MAX_NAME_LENGTH, required=True
            )
        idem_key = keys.idempotency(str(idempotency_scope), idempotency_key or "-")
        if chosen:
            session_id = validation.session_id(session_id)
        elif idempotency_key is not None:
            # Drawn in the idempotency key's shard: key and session in one slot, one script.
            session_id = keys.new_id_in(
                keys.idempotency_shard(str(idempotency_scope), idempotency_key)
            )
        else:
            session_id = new_session_id()
        shard = keys.shard_of(session_id)
        # One script checks and sets the key when it shares the session's shard; otherwise
        # (a caller-chosen id elsewhere) IDEM_CLAIM reserves it first: see scripts.IDEM_CLAIM.
        two_step = (
            idempotency_key is not None
            and keys.idempotency_shard(str(idempotency_scope), idempotency_key) != shard
        )
        body_hash = hashlib.sha256(
            json.dumps([fields, ttl_hours, session_id if chosen else None]).encode()
        ).hexdigest()[:32]
        now = _now()
        expires_at = now + ttl_hours * 3600
        redis_expire_ms = int((expires_at + settings.SESSION_REDIS_GRACE_HOURS * 3600) * 1000)
        # Counters and empty optional fields are left out: absent reads as zero / empty.
        hash_fields: dict[str, str | int] = {
            name: value for name, value in fields.items() if value not in ("", "{}")
        }
        hash_fields.update(
            id=session_id,
            created_at=f"{now:.6f}",
            last_activity_at=f"{now:.6f}",
            expires_at=f"{expires_at:.6f}",
            redis_expire_ms=redis_expire_ms,
        )
        user_cap = int(getattr(policy, "max_live_sessions_per_user", 0) or 0)
        user_cap = user_cap if fields["user_id"] else 0
        total_cap = int(getattr(policy, "max_live_sessions", 0) or 0)
        if (user_cap or total_cap) and keys.shard_count() > 1:
            # The caps count over every shard: checked here, before the create (so two
            # creates racing at the cap may both pass); one shard checks inside the script.
            earlier = None
            if idempotency_key is not None:  # a retry of a create that won is not refused
                earlier = yield Call("idem_get", [idem_key])
            if earlier is None:
                yield from self._check_caps(fields["user_id"], user_cap, total_cap)
            user_cap = total_cap = 0
        meta, events, context, results, event_ids = keys.session_keys(session_id)
        if two_step:
            hash_fields["idem_key"] = idem_key
            claim = yield Call(
                "idem_claim", [idem_key], [session_id, body_hash, IDEMPOTENCY_TTL_SECONDS]
            )
            if int(claim[0]) == -6:
                raise IdempotencyKeyReused(str(idempotency_key), claim[1])
            if int(claim[0]) == 0:
                existing = yield from StoreCore.get_session(self, claim[1])
                if existing is not None:
                    return existing
                # Reserved by a request that stopped before its create (same body, so the
                # same id): the reservation stands, the create below completes it.
        result = yield Call(
            "create",
            [
                meta,
                keys.due(shard),
                keys.activity(shard),
                keys.user(shard, fields["user_id"]),
                keys.session_type(shard, session_type),
                idem_key
                if idempotency_key is not None and not two_step
                else keys.placeholder(session_id),
                events,
                context,
                results,
                event_ids,
            ],
            [
                session_id,
                f"{now:.6f}",
                f"{expires_at:.6f}",
                redis_expire_ms,
                "1" if idempotency_key and not two_step else "0",
                IDEMPOTENCY_TTL_SECONDS,
                body_hash,
                user_cap,
                total_cap,
                *[item for pair in hash_fields.items() for item in pair],
            ],
        )
        code = int(result[0])
        if two_step and code < 0:  # refused: free the key for a corrected retry
            yield Call("idem_release", [idem_key], [session_id])
        if code == 0:  # an earlier request with this idempotency key won
            existing = yield from StoreCore.get_session(self, result[1])
            if existing is None:
                raise SessionNotFound(result[1])
            return existing
        if code == -6:  # only answered to a create that sent a key
            raise IdempotencyKeyReused(str(idempotency_key), result[1])
        if code == -7:
            raise SessionAlreadyExists(session_id)
        if code == -8:
            raise SessionLimitExceeded(result[1], int(result[2]))
        if chosen:
            # Archived under this id? Checked after the Redis create: the archiver writes
            # Postgres before it drops the keys, so one of the two checks sees any earlier
            # session with this id.
            try:
                archived_status = yield Db("status", (session_id,))
            except DatabaseError:
                archived_status = None
            if archived_status is not None:
                yield from self._drop_live(session_id)
                raise SessionAlreadyExists(session_id)
        created = at(hash_fields["created_at"])
        preferences = json.loads(fields["preferences"])
        session = AnalysisSession(
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
            expires_at=at(hash_fields["expires_at"]),
            is_live=True,
            preferences=preferences,
            metadata=json.loads(fields["metadata"]),
            state=SessionState(preferences=preferences),
        )
        session.mark_saved()
        return session

    def update_session(
        self,
        session_id: Any,
        session: AnalysisSession | None = None,
        *,
        increment_requests: bool = False,
        add_processing_time: float = 0.0,
        mark_error: bool = False,
        event_id: str | None = None,
    ) -> Op:
        """Write back what changed on `session` since it was read (queries added, context and
        result keys set or removed, tags/purpose/metadata) in one atomic script; or move the
        AIECS counters (request_count, total_processing_time in seconds, error_count): True,
        or False when `event_id` was applied before (the counters are moved once)."""
        session_id = validation.session_id(session_id)
        if session is None:
            if not isinstance(increment_requests, bool) or not isinstance(mark_error, bool):
                raise InvalidInput("increment_requests", "must be true or false")
            seconds = validation.non_negative(
                "add_processing_time", add_processing_time, maximum=86_400.0
            )
            # An event without a timeline entry: the script records its id (so a retry is a
            # duplicate) and moves the counters, but appends nothing.
            counters_event = (
                "" if event_id is None else _event_id(event_id),
                "counters",
                "",
                codec.counters(
                    ("request_count", int(increment_requests)), ("error_count", int(mark_error))
                ),
                codec.counters(("total_processing_time", seconds)),
            )
            (applied,) = yield from self._apply(session_id, events=[counters_event], raw=True)
            return applied != DUPLICATE
        if event_id is not None:
            raise InvalidInput("event_id", "is only taken with the counters, not with a session")
        if not isinstance(session, AnalysisSession):
            raise InvalidInput("session", "must be a session read from this store")
        changes = session.changes()
        events = [_query_event(query) for query in changes["queries"]]
        entries = {}
        for name in ("context", "results"):
            entries[f"{name}_set"] = {
                validation.context_key("key", key): validation.json_payload("value", value)
                for key, value in changes[f"{name}_set"].items()
            }
            entries[f"{name}_removed"] = changes[f"{name}_removed"]
        meta = self._meta_fields(**changes["meta"])
        if events or meta or any(entries.values()):
            seqs = yield from self._apply(session_id, events=events, meta_set=meta, **entries)
            for query, seq in zip(
                session.state.history.queries[-len(events) :], seqs, strict=False
            ):
                if seq is not None and events:
                    query.seq = seq
        session.mark_saved()
        return session

    @staticmethod
    def _meta_fields(tags: Any = None, purpose: Any = None, metadata: Any = None) -> dict[str, str]:
        meta = {}
        if tags is not None:
            meta["tags"] = json.dumps(validation.tags(tags))
        if purpose is not None:
            meta["purpose"] = validation.text("purpose", purpose, validation.MAX_PURPOSE_LENGTH)
        if metadata is not None:
            meta["metadata"] = validation.json_payload("metadata", metadata, require_dict=True)
        return meta

    def update_session_metadata(
        self,
        session_id: Any,
        purpose: str | None = None,
        tags: list[str] | None = None,
        custom_metadata: dict | None = None,
    ) -> Op:
        """Set purpose, tags and/or metadata of a live session (the MCP manager's call)."""
        session_id = validation.session_id(session_id)
        meta = self._meta_fields(tags=tags, purpose=purpose, metadata=custom_metadata)
        yield from self._apply(session_id, meta_set=meta)
        return True

    def add_query(self, session_id: Any, query: QueryRecord, *, event_id: str | None = None) -> Op:
        """Append a query; its timeline position, or None if `event_id` was applied before.
        QueryLimitExceeded past the policy's limit."""
        session_id = validation.session_id(session_id)
        if event_id is not None and isinstance(query, QueryRecord):
            query = QueryRecord(**{**query.__dict__, "event_id": event_id})
        (seq,) = yield from self._apply(session_id, events=[_query_event(query)])
        return seq

    def add_message(
        self,
        session_id: Any,
        *,
        role: str,
        content: str,
        tool_name: str | None = "",
        invocation_id: str | None = "",
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost: float = 0.0,
        event_id: str | None = None,
    ) -> Op:
        """Append a conversation message (user, assistant, tool or system), with the model
        tokens and cost it took (added to the session's); its position (None if `event_id` was
        applied before)."""
        session_id = validation.session_id(session_id)
        tokens_in = validation.non_negative("tokens_in", tokens_in, integer=True)
        tokens_out = validation.non_negative("tokens_out", tokens_out, integer=True)
        cost = validation.non_negative("cost", cost, maximum=validation.MAX_COST)
        event_id = _event_id(event_id)
        usage = {"tokens_in": tokens_in, "tokens_out": tokens_out, "cost": cost}
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
            # Only when used: most messages carry none, and their timeline stays as it was.
            **{name: value for name, value in usage.items() if value},
            "event_id": event_id,
            "occurred_at": round(_now(), 6),
        }
        ints = codec.counters(
            ("message_count", 1), ("tokens_in", tokens_in), ("tokens_out", tokens_out)
        )
        body = codec.json_body(event)
        floats = codec.counters(("cost", cost))
        (seq,) = yield from self._apply(
            session_id, events=[(event_id, "message", body, ints, floats)]
        )
        return seq

    def record_tool_call(
        self,
        session_id: Any,
        *,
        tool_name: str,
        invocation_id: str | None = "",
        duration_ms: float | None = None,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost: float = 0.0,
        error: str = "",
        event_id: str | None = None,
    ) -> Op:
        """Append a tool call with its duration, tokens and cost; its position (None if
        `event_id` was applied before)."""
        session_id = validation.session_id(session_id)
        tokens_in = validation.non_negative("tokens_in", tokens_in, integer=True)
        tokens_out = validation.non_negative("tokens_out", tokens_out, integer=True)
        cost = validation.non_negative("cost", cost, maximum=validation.MAX_COST)
        error = validation.text("error", error, validation.MAX_SUMMARY_LENGTH)
        duration = (
            None
            if duration_ms is None
            else validation.non_negative(
                "duration_ms", duration_ms, maximum=validation.MAX_DURATION_MS
            )
        )
        event_id = _event_id(event_id)
        event = {
            "kind": EventKind.TOOL_CALL.value,
            "tool_name": validation.text(
                "tool_name", tool_name, validation.MAX_NAME_LENGTH, required=True
            ),
            "invocation_id": validation.text(
                "invocation_id", invocation_id, validation.MAX_NAME_LENGTH
            ),
            "duration_ms": duration,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost": cost,
            "error": error,
            "event_id": event_id,
            "occurred_at": round(_now(), 6),
        }
        ints = codec.counters(
            ("tool_call_count", 1),
            ("tokens_in", tokens_in),
            ("tokens_out", tokens_out),
            ("error_count", int(bool(error))),
        )
        floats = codec.counters(("cost", cost), ("tool_duration_ms", duration or 0))
        body = codec.json_body(event)
        (seq,) = yield from self._apply(
            session_id, events=[(event_id, "tool_call", body, ints, floats)]
        )
        return seq

    def _set_entry(self, session_id: Any, target: str, entry: Any, value: Any) -> Op:
        session_id = validation.session_id(session_id)
        entry = validation.context_key("key", entry)
        encoded = validation.json_payload("value", value)
        yield from self._apply(session_id, **{f"{target}_set": {entry: encoded}})

    def update_context(self, session_id: Any, context_key: str, value: Any) -> Op:
        """Set one context key to a JSON value, leaving the other keys as they are."""
        yield from self._set_entry(session_id, "context", context_key, value)

    def store_intermediate_result(self, session_id: Any, result_key: str, value: Any) -> Op:
        """Set one intermediate result to a JSON value."""
        yield from self._set_entry(session_id, "results", result_key, value)

    def extend_session(self, session_id: Any, hours: float = 24) -> Op:
        """Push the expiry back by `hours`; InvalidTTL if that passes the type's max TTL."""
        session_id = validation.session_id(session_id)
        hours = _hours("hours", hours)
        policies = yield Policies()
        meta, events, context, results, event_ids = keys.session_keys(session_id)
        result = yield Call(
            "extend",
            [meta, keys.due(keys.shard_of(session_id)), events, context, results, event_ids],
            [
                session_id,
                f"{_now():.6f}",
                hours * 3600,
                per_type(policies, "max_ttl_hours"),
                settings.SESSION_REDIS_GRACE_HOURS * 3600,
            ],
        )
        if int(result[0]) == -5:
            allowed = max(float(result[1]) / 3600, 0)
            raise InvalidTTL(
                "hours",
                f"would pass the {result[2]} h max TTL of {result[3]} sessions; "
                f"at most {allowed:.2f} more hours allowed",
            )
        yield from self._check(result, session_id)
        return ts(result[1])

    def end_session(
        self, session_id: Any, status: str = SessionStatus.COMPLETED, *, archive: bool = True
    ) -> Op:
        """End a live session (completed, failed, abandoned or expired) and archive it now.

        A session already past its expiry can only end as expired (else SessionNotActive).
        If Postgres is unavailable the session stays in Redis, due, and cleanup archives it.
        """
        session_id = validation.session_id(session_id)
        status = validation.end_status(status)
        meta = keys.meta(session_id)
        shard = keys.shard_of(session_id)
        info = yield Call("delete_info", [meta])
        if not info:
            yield from self._not_live(session_id)
        result = yield Call(
            "end",
            [meta, keys.due(shard), keys.activity(shard), keys.session_type(shard, info[1])],
            [session_id, f"{_now():.6f}", status],
        )
        yield from self._check(result, session_id)
        if archive:
            yield Archive(session_id)
        session = yield from StoreCore.get_session(self, session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    def complete_session(self, session_id: Any, status: str = SessionStatus.COMPLETED) -> Op:
        """The MCP manager's name for end_session."""
        return (yield from StoreCore.end_session(self, session_id, status))

    def _drop_live(self, session_id: str) -> Op:
        meta, events, context, results, event_ids = keys.session_keys(session_id)
        info = yield Call("delete_info", [meta])
        user_id, type_, idem = info if info else ("", SessionType.AGENT, "")
        shard = keys.shard_of(session_id)
        # An idempotency key in another shard (a caller-chosen id) is freed by its own call.
        elsewhere = bool(idem) and not keys.same_shard(idem, meta)
        deleted = yield Call(
            "delete",
            [
                meta,
                events,
                context,
                results,
                event_ids,
                keys.due(shard),
                keys.activity(shard),
                keys.user(shard, user_id),
                keys.session_type(shard, type_),
                keys.placeholder(session_id) if elsewhere or not idem else idem,
            ],
            [session_id],
        )
        if elsewhere:
            yield Call("idem_release", [idem], [session_id])
        return deleted

    def delete_session(self, session_id: Any) -> Op:
        """Delete a session wherever it is (Redis and Postgres); True if something was deleted.
        Its idempotency key is freed with it."""
        session_id = validation.session_id(session_id)
        live = yield from self._drop_live(session_id)
        archived = yield Db("delete", (session_id,))
        return bool(live) or bool(archived)

    # ---- reads -----------------------------------------------------------------------------

    def get_session(self, session_id: Any, recent_events: int = 20) -> Op:
        """The session, live from Redis, else archived from Postgres, else None."""
        session_id = validation.session_id(session_id)
        recent_events = max(int(recent_events), 0)
        meta, events, context, results, _ = keys.session_keys(session_id)
        reply = yield Call("get", [meta, context, results, events], [recent_events, LOADED_QUERIES])
        if reply:
            return self._bind(codec.session_from_reply(reply))
        return self._bind((yield Db("get", (session_id, recent_events, LOADED_QUERIES))))

    def get_archived_session(self, session_id: Any, recent_events: int = 20) -> Op:
        """The session from Postgres only (also when Redis is down), else None."""
        session_id = validation.session_id(session_id)
        session = yield Db("get", (session_id, max(int(recent_events), 0), LOADED_QUERIES))
        return self._bind(session)

    def get_recent_queries(self, session_id: Any, n: int = 5) -> Op:
        """The last `n` queries of a session, oldest first."""
        session_id = validation.session_id(session_id)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidInput("n", "must be a whole number, zero or more")
        if n == 0:
            return []
        meta, events, *_ = keys.session_keys(session_id)
        raw = yield Call("recent_queries", [meta, events], [n])
        if raw:
            return [codec.event_from_json(item) for item in reversed(raw)]
        return (yield Db("recent_queries", (session_id, n)))

    def get_timeline(self, session_id: Any, offset: int = 0, limit: int = 50) -> Op:
        """A page of the session's timeline in order, and the total number of events. An
        archived session's comes from Postgres, also while Redis is down (StoreUnavailable
        then only for a session that is not archived: it may be live)."""
        session_id = validation.session_id(session_id)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidInput("offset", "must be zero or more")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
            raise InvalidInput("limit", "must be between 1 and 500")
        meta, events, *_ = keys.session_keys(session_id)
        try:
            status, count, raw = yield Call(
                "timeline", [meta, events], [offset, offset + limit - 1]
            )
        except StoreUnavailable:
            archived = yield Db("timeline", (session_id, offset, limit))
            if archived is None:
                raise
            return archived
        if status:
            return [codec.event_from_json(item) for item in raw], int(count)
        archived = yield Db("timeline", (session_id, offset, limit))
        if archived is None:
            raise SessionNotFound(session_id)
        return archived

    def list_user_sessions(
        self,
        user_id: str,
        include_archived: bool = False,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Op:
        """A user's sessions, newest first, `limit` per page: a list with `next_cursor`."""
        user_id = validation.user_id(user_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 500:
            raise InvalidInput("limit", "must be a whole number between 1 and 500")
        max_score, after_id = codec.cursor_decode(cursor) if cursor else (None, "")
        user_indexes = {shard: keys.user(shard, user_id) for shard in keys.shards()}
        items = yield from self._newest(user_indexes, limit + 1, max_score, after_id)
        if include_archived:
            archived = yield Db("user_summaries", (user_id, limit, max_score, after_id))
            live_ids = {item.id for item in items}
            items += [item for item in archived if item.id not in live_ids]
            items.sort(key=lambda item: (item.created_at, item.id), reverse=True)
        has_more = len(items) > limit
        items = items[:limit]
        next_cursor = None
        if has_more:
            last = items[-1]
            next_cursor = codec.cursor_encode(last.created_at.timestamp(), last.id)
        return SessionList(items, next_cursor)

    def list_live_sessions(self, limit: int = 50, offset: int = 0) -> Op:
        """Active sessions in Redis, most recent activity first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidInput("limit", "must be a whole number, zero or more")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidInput("offset", "must be a whole number, zero or more")
        if limit == 0:
            return []
        indexes = {shard: keys.activity(shard) for shard in keys.shards()}
        entries = yield from self._top(indexes, offset + limit)
        rows = yield from self._summaries([session_id for session_id, _ in entries])
        page = [rows[i] for i, _ in entries[offset : offset + limit] if i in rows]
        return page

    def list_sessions(
        self,
        user_id: str | None = None,
        status: str | None = None,
        tags: list[str] | None = None,
        limit: int = 100,
        session_type: str | None = None,
        created_from: datetime | float | None = None,
        created_to: datetime | float | None = None,
    ) -> Op:
        """Sessions (live and archived), newest first, filtered by user, status, tags (all of
        them), type and creation time (from, inclusive, to, exclusive) through the indexes:
        the seeds' `list_sessions`."""
        status = getattr(status, "value", status)
        if status is not None and status not in SessionStatus.values:
            raise InvalidInput("status", f"must be one of {', '.join(SessionStatus.values)}")
        tags = validation.tags(tags) if tags is not None else None
        if user_id is not None:
            user_id = validation.user_id(user_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidInput("limit", "must be a whole number between 1 and 1000")
        if session_type is not None:
            session_type = validation.session_type(session_type)
        since = _moment("created_from", created_from)
        until = _moment("created_to", created_to)
        if since is not None and until is not None and until < since:
            raise InvalidInput("created_to", "must not be before created_from")
        if user_id is not None:
            indexes = {shard: keys.user(shard, user_id) for shard in keys.shards()}
            # The user index is scored by creation: start at created_to (excluded below).
            live = yield from self._newest(
                indexes, LIST_SCAN, None if until is None else until.timestamp()
            )
        else:
            index = keys.activity if status == SessionStatus.ACTIVE else keys.due
            entries = yield from self._top(
                {shard: index(shard) for shard in keys.shards()}, LIST_SCAN
            )
            rows = yield from self._summaries([session_id for session_id, _ in entries])
            live = [rows[i] for i, _ in entries if i in rows]
        live = [
            item
            for item in live
            if (status is None or item.status == status)
            and (not tags or set(tags) <= set(item.tags))
            and (session_type is None or item.session_type == session_type)
            and (since is None or item.created_at >= since)
            and (until is None or item.created_at < until)
        ]
        archived: list[SessionSummary] = []
        if status != SessionStatus.ACTIVE:
            archived = yield Db(
                "filtered_summaries",
                (user_id, status, tags, limit, session_type, since, until),
            )
        live_ids = {item.id for item in live}
        merged = live + [item for item in archived if item.id not in live_ids]
        merged.sort(key=lambda item: (item.created_at, item.id), reverse=True)
        return SessionList(merged[:limit])

    def live_counts(self) -> Op:
        """{"total": active sessions, "by_type": {type: active sessions}} in one round trip."""
        names = list(SessionType.values)
        replies = yield Calls(
            [
                Call("counts", [keys.activity(s), *[keys.session_type(s, t) for t in names]])
                for s in keys.shards()
            ]
        )
        total, *by_type = (sum(int(reply[i]) for reply in replies) for i in range(len(names) + 1))
        return {"total": total, "by_type": dict(zip(names, by_type, strict=True))}

    def archive_backlog(self, now: float | None = None) -> Op:
        """Sessions past due and not archived yet (ended ones are due at 0): one ZCOUNT."""
        at = _now() if now is None else float(now)
        total = 0
        for shard in keys.shards():  # one ZCOUNT per shard (one in all on a single Redis)
            total += int((yield Command("ZCOUNT", (keys.due(shard), "-inf", at))))
        return total

    def live_totals(self, session_type: str | None = None, user_id: str | None = None) -> Op:
        """Counter sums over the sessions still in Redis (not archived yet), of one type and/or
        user, in one round trip: {"sessions", "complete", <counter>: sum}. At most
        LIVE_TOTALS_LIMIT sessions are read; `complete` is False when there were more."""
        if session_type is not None and session_type not in SessionType.values:
            raise InvalidInput("session_type", f"must be one of {', '.join(SessionType.values)}")
        if user_id is not None:
            user_id = validation.user_id(user_id)
            indexes = {shard: keys.user(shard, user_id) for shard in keys.shards()}
        else:
            indexes = {shard: keys.due(shard) for shard in keys.shards()}
        entries = yield from self._top(indexes, LIVE_TOTALS_LIMIT + 1)
        complete = len(entries) <= LIVE_TOTALS_LIMIT
        groups = _by_shard([session_id for session_id, _ in entries[:LIVE_TOTALS_LIMIT]])
        replies = []
        if groups:
            replies = yield Calls(
                [
                    Call("rows", [keys.meta(i) for i in group], list(LIVE_TOTAL_FIELDS))
                    for group in groups
                ]
            )
        rows = [row for reply in replies for row in reply if row[0] is not None]
        totals: dict[str, Any] = dict.fromkeys(LIVE_TOTAL_FIELDS[1:], 0)
        totals.update(dict.fromkeys(LIVE_FLOAT_TOTALS, 0.0))
        sessions = 0
        for row in rows[:LIVE_TOTALS_LIMIT]:
            if session_type is not None and row[0] != session_type:
                continue
            sessions += 1
            for name, value in zip(LIVE_TOTAL_FIELDS[1:], row[1:], strict=True):
                if value:
                    totals[name] += float(value) if name in LIVE_FLOAT_TOTALS else int(value)
        return {"sessions": sessions, "complete": complete, **totals}

    def live_flags(self, session_ids: list[str]) -> Op:
        """{id: True if live in Redis} for these ids, in one round trip."""
        ids = [str(session_id) for session_id in session_ids]
        if not ids:
            return {}
        groups = _by_shard(ids)
        replies = yield Calls([Call("exists", [keys.meta(i) for i in group]) for group in groups])
        return {
            i: bool(int(flag))
            for group, reply in zip(groups, replies, strict=True)
            for i, flag in zip(group, reply, strict=True)
        }

    # ---- the seeds' manager calls ----------------------------------------------------------

    def add_conversation_message(
        self,
        session_id: Any,
        role: str,
        content: str,
        tool_name: str | None = None,
        invocation_id: str | None = None,
    ) -> Op:
        """The MCP manager's add_conversation_message: add_message by another name."""
        return (
            yield from StoreCore.add_message(
                self,
                session_id,
                role=role,
                content=content,
                tool_name=tool_name or "",
                invocation_id=invocation_id or "",
            )
        )

    def link_invocation(
        self,
        session_id: Any,
        invocation_id: str,
        tool_name: str,
        invocation_dir: Any = None,
        duration_ms: float | None = None,
    ) -> Op:
        """The MCP manager's link_invocation: a tool call (its directory is not kept)."""
        return (
            yield from StoreCore.record_tool_call(
                self,
                session_id,
                tool_name=tool_name,
                invocation_id=invocation_id,
                duration_ms=duration_ms,
            )
        )

    def get_session_statistics(self, session_id: Any) -> Op:
        """Invocations, their total duration, tools used, messages by role, tokens and cost of
        one session; None if there is no such session."""
        session = yield from StoreCore.get_session(self, session_id, recent_events=0)
        if session is None:
            return None
        events, offset = [], 0
        while offset < session.event_count:
            page, _ = yield from StoreCore.get_timeline(self, session.id, offset=offset, limit=500)
            if not page:
                break
            events += page
            offset += len(page)
        tools = [e for e in events if e.kind == EventKind.TOOL_CALL]
        roles: dict[str, int] = {}
        for event in events:
            if event.kind == EventKind.MESSAGE:
                roles[event.role] = roles.get(event.role, 0) + 1
        return {
            "session_id": session.id,
            "status": session.status,
            "total_invocations": len(tools),
            "total_duration_ms": sum(e.duration_ms or 0 for e in tools),
            "tools_used": sorted({e.tool_name for e in tools}),
            "total_messages": session.message_count,
            "messages_by_role": roles,
            "token_usage": {"input": session.tokens_in, "output": session.tokens_out},
            "estimated_cost": float(session.cost),
            "duration_seconds": session.duration_seconds,
        }

    def cleanup_inactive_sessions(self, max_idle_seconds: float = 1800) -> Op:
        """End as expired every active session idle longer than `max_idle_seconds` (the AIECS
        call); returns how many. The archiver then moves them to Postgres."""
        idle = validation.non_negative("max_idle_seconds", max_idle_seconds)
        cutoff = _now() - idle
        ended = 0
        while True:
            replies = yield Calls(
                [
                    Call("list_idle", [keys.activity(s)], [f"{cutoff:.6f}", LIST_SCAN])
                    for s in keys.shards()
                ]
            )
            rows = [session_id for reply in replies for session_id in reply]
            if not rows:
                return ended
            full = any(len(reply) >= LIST_SCAN for reply in replies)
            before = ended
            for session_id in rows:
                try:
                    yield from StoreCore.end_session(
                        self, session_id, SessionStatus.EXPIRED, archive=False
                    )
                    ended += 1
                except (SessionNotActive, SessionNotFound):
                    pass  # ended or archived meanwhile
            # A full batch of entries that could not be ended (left for the archiver) would
            # come back forever: stop.
            if not full or ended == before:
                return ended

    def cleanup_old_sessions(self, max_age_days: float = 30) -> Op:
        """Delete sessions created more than `max_age_days` ago, live or archived (the MCP
        manager's call); returns how many."""
        days = validation.non_negative("max_age_days", max_age_days)
        cutoff = _now() - days * 86400
        replies = yield Calls(
            [
                Call(
                    "list_old",
                    [keys.session_type(s, name) for name in SessionType.values],
                    [f"{cutoff:.6f}", LIST_SCAN],
                )
                for s in keys.shards()
            ]
        )
        old_live = [session_id for reply in replies for session_id in reply]
        deleted = 0
        for session_id in old_live:
            deleted += int(bool((yield from self._drop_live(session_id))))
        deleted += yield Db("delete_created_before", (datetime.fromtimestamp(cutoff, tz=UTC),))
        return deleted


def _by_shard(session_ids: list[str]) -> list[list[str]]:
    """The ids grouped by shard (each group one slot: one script call)."""
    groups: dict[int, list[str]] = {}
    for session_id in session_ids:
        groups.setdefault(keys.shard_of(session_id), []).append(session_id)
    return list(groups.values())


def recent_query_events(events: list[TimelineEvent]) -> list[TimelineEvent]:
    return [event for event in events if event.kind == EventKind.QUERY]
