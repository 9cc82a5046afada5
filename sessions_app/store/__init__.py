"""The session store: live sessions in Redis, archived ones read from Postgres.

Every write to a live session is one Lua script call: atomic, one round trip, O(1) in the
session's history length. Layout: keys.py; scripts: scripts.py; operations (written once):
core.py; front-ends: sync.py (`SessionStore`) and aio.py (`AsyncSessionStore`).
"""

from __future__ import annotations

from sessions_app.domain import (
    AnalysisSession,
    QueryRecord,
    SessionList,
    SessionSummary,
    TimelineEvent,
)
from sessions_app.models import SessionStatus, SessionType
from sessions_app.store.core import IDEMPOTENCY_TTL_SECONDS
from sessions_app.store.sync import SessionStore

Session = AnalysisSession

__all__ = [
    "IDEMPOTENCY_TTL_SECONDS",
    "AnalysisSession",
    "QueryRecord",
    "Session",
    "SessionAnalytics",
    "SessionList",
    "SessionStatus",
    "SessionStore",
    "SessionSummary",
    "SessionType",
    "TimelineEvent",
    "get_session_store",
]

_store: SessionStore | None = None


def get_session_store() -> SessionStore:
    """The process-wide store (its Redis client and scripts are shared)."""
    global _store
    if _store is None:
        _store = SessionStore()
    return _store


def __getattr__(name: str):
    if name == "SessionAnalytics":  # the analytics module imports the store: import lazily
        from sessions_app.store.analytics import SessionAnalytics

        return SessionAnalytics
    raise AttributeError(name)
