"""Test data: archived Sessions (bulk_create) with their timeline chunks, and live sessions.

`archived_session(...)` saves one archived session with its timeline; `archived_sessions(specs)`
saves many in a few statements. Counters are derived from the events unless given explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from django.db import connection
from django.utils import timezone

from sessions_app.archive import timeline
from sessions_app.domain import new_session_id
from sessions_app.models import EventKind, Session, SessionEvent
from sessions_app.rollups import fold_sessions

BATCH_SIZE = 2000


def _query_event(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": EventKind.QUERY,
        "query_type": spec.get("query_type", "price"),
        "parameters": spec.get("parameters", {}),
        "result_summary": spec.get("result_summary", ""),
        "execution_ms": spec.get("execution_ms", 10.0),
        "cache_hit": spec.get("cache_hit", False),
        "error": spec.get("error", ""),
    }


def _message_event(spec: dict[str, Any] | tuple[str, str]) -> dict[str, Any]:
    if isinstance(spec, tuple):
        spec = {"role": spec[0], "content": spec[1]}
    return {
        "kind": EventKind.MESSAGE,
        "role": spec.get("role", "user"),
        "content": spec.get("content", ""),
        "tool_name": spec.get("tool_name", ""),
        "invocation_id": spec.get("invocation_id", ""),
    }


def _tool_event(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": EventKind.TOOL_CALL,
        "tool_name": spec.get("tool_name", "tool"),
        "invocation_id": spec.get("invocation_id", ""),
        "duration_ms": spec.get("duration_ms", 100.0),
        "tokens_in": spec.get("tokens_in", 0),
        "tokens_out": spec.get("tokens_out", 0),
        "cost": Decimal(str(spec.get("cost", 0))),
        "error": spec.get("error", ""),
    }


EVENT_FIELDS = (
    "seq", "kind", "occurred_at", "query_type", "parameters", "result_summary", "execution_ms",
    "cache_hit", "error", "role", "content", "tool_name", "invocation_id", "duration_ms",
    "tokens_in", "tokens_out", "cost",
)  # fmt: skip


def event_json(event: SessionEvent) -> str:
    """An unsaved SessionEvent as the JSON text the live store (and so the archive) keeps."""
    values = {name: getattr(event, name) for name in EVENT_FIELDS}
    values["kind"] = str(values["kind"])
    values["role"] = str(values["role"])
    values["cost"] = float(values["cost"])
    return timeline.event_json(values)


def _query_type_counts(queries: list[SessionEvent]) -> dict[str, int]:
    """{query_type: queries}, as the archiver stores it ("other" for a blank type)."""
    counts: dict[str, int] = {}
    for event in queries:
        name = event.query_type or "other"
        counts[name] = counts.get(name, 0) + 1
    return counts


def build_archived_session(
    *,
    created_at: datetime | None = None,
    duration_seconds: float = 600.0,
    queries: Iterable[dict[str, Any]] = (),
    messages: Iterable[dict[str, Any] | tuple[str, str]] = (),
    tool_calls: Iterable[dict[str, Any]] = (),
    **fields: Any,
) -> tuple[Session, list[SessionEvent]]:
    """An unsaved archived Session and its events; counters follow the events unless given.

    Events are laid out in order: queries, then messages, then tool calls, one second apart.
    """
    created_at = created_at or timezone.now() - timedelta(hours=2)
    ended_at = created_at + timedelta(seconds=duration_seconds)
    session_id = str(fields.pop("id", None) or new_session_id())
    specs = (
        [_query_event(q) for q in queries]
        + [_message_event(m) for m in messages]
        + [_tool_event(t) for t in tool_calls]
    )
    events = [
        SessionEvent(
            session_id=session_id,
            seq=seq,
            occurred_at=created_at + timedelta(seconds=seq + 1),
            **spec,
        )
        for seq, spec in enumerate(specs)
    ]
    queries_ = [e for e in events if e.kind == EventKind.QUERY]
    tools = [e for e in events if e.kind == EventKind.TOOL_CALL]
    derived = {
        "query_count": len(queries_),
        "cache_hits": sum(e.cache_hit for e in queries_),
        "error_count": sum(bool(e.error) for e in queries_ + tools),
        "message_count": sum(e.kind == EventKind.MESSAGE for e in events),
        "tool_call_count": len(tools),
        "total_execution_ms": sum(e.execution_ms or 0 for e in queries_),
        "tokens_in": sum(e.tokens_in for e in tools),
        "tokens_out": sum(e.tokens_out for e in tools),
        "cost": sum((e.cost for e in tools), Decimal(0)),
        "query_type_counts": _query_type_counts(queries_),
    }
    values = {
        "user_id": "user-1",
        "session_type": "equity",
        "status": "completed",
        "assets": ["AAPL"],
        "tags": [],
        "purpose": "",
        "created_at": created_at,
        "last_activity_at": ended_at,
        "expires_at": created_at + timedelta(hours=24),
        "ended_at": ended_at,
        "archived_at": ended_at,
        "duration_seconds": duration_seconds,
        **derived,
        **fields,
    }
    return Session(id=session_id, **values), events


def archived_sessions(specs: Iterable[dict[str, Any]], *, fold: bool = True) -> list[Session]:
    """Save many archived sessions (each spec: build_archived_session's arguments) in bulk.

    Like the archiver, they are folded into the daily rollups at once; `fold=False` leaves the
    rollups alone (rows that only a recompute would find).
    """
    sessions: list[Session] = []
    events: list[SessionEvent] = []
    for spec in specs:
        session, session_events = build_archived_session(**spec)
        sessions.append(session)
        events.extend(session_events)
    Session.objects.bulk_create(sessions, batch_size=BATCH_SIZE)
    by_session: dict[str, list[str]] = {}
    for event in events:
        by_session.setdefault(event.session_id, []).append(event_json(event))
    with connection.cursor() as cursor:
        timeline.write(cursor, by_session)
    if fold:
        fold_sessions([session.id for session in sessions])
    return sessions


def archived_session(**spec: Any) -> Session:
    """Save one archived session with its events; see build_archived_session."""
    return archived_sessions([spec])[0]


def live_session(*, queries: Iterable[dict[str, Any]] = (), messages=(), **create_kwargs: Any):
    """Create a live session through the store and record `queries` and `messages` on it."""
    from sessions_app.store import QueryRecord, get_session_store

    store = get_session_store()
    create_kwargs.setdefault("assets", ["AAPL"])
    create_kwargs.setdefault("session_type", "equity")
    create_kwargs.setdefault("user_id", "user-1")
    session = store.create_session(**create_kwargs)
    for spec in queries:
        store.add_query(
            session.id,
            QueryRecord(
                query_type=spec.get("query_type", "price"),
                parameters=spec.get("parameters", {}),
                result_summary=spec.get("result_summary", ""),
                execution_time_ms=spec.get("execution_ms", 10.0),
                cache_hit=spec.get("cache_hit", False),
                error=spec.get("error", ""),
            ),
        )
    for spec in messages:
        role, content = spec if isinstance(spec, tuple) else (spec["role"], spec["content"])
        store.add_message(session.id, role=role, content=content)
    return store.get_session(session.id)


@contextmanager
def redis_unavailable():
    """Point the process's Redis client at a closed port for the duration of the block."""
    from django.conf import settings

    from sessions_app.redis_client import get_redis

    original = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    get_redis.cache_clear()
    try:
        yield
    finally:
        settings.REDIS_URL = original
        get_redis.cache_clear()


def event_rows(session_id: str | None = None) -> list[SimpleNamespace]:
    """Archived events as rows with the old per-event columns (and `session_id`), in order."""
    where, params = ("WHERE session_id = %s", [str(session_id)]) if session_id else ("", [])
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT * FROM {timeline.EVENT_ROWS} ev {where} ORDER BY session_id, seq",
            params,
        )
        names = [column.name for column in cursor.description]
        rows = [SimpleNamespace(**dict(zip(names, row, strict=True))) for row in cursor]
    for row in rows:  # Django's connection leaves jsonb as text
        row.parameters = json.loads(row.parameters)
    return rows
