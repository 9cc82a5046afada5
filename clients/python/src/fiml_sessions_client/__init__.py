"""FIML Sessions client: the session store's API over HTTP (async and sync), writes batched.

store = await get_session_store(url="https://sessions.example", api_key="fs_...")
store = get_session_store_sync(url=..., api_key=...)   # the same API without await
"""

from fiml_sessions_client._core import (
    ApiError,
    FlushReport,
    InvalidInput,
    QueryRecord,
    Retry,
    Session,
    SessionAlreadyExists,
    SessionNotActive,
    SessionNotFound,
    SessionPage,
    SessionStatus,
    SessionType,
    StoreUnavailable,
)
from fiml_sessions_client.aio import AsyncSessionStore, get_session_store
from fiml_sessions_client.sync import SessionStore, get_session_store_sync

__all__ = [
    "ApiError",
    "AsyncSessionStore",
    "FlushReport",
    "InvalidInput",
    "QueryRecord",
    "Retry",
    "Session",
    "SessionAlreadyExists",
    "SessionNotActive",
    "SessionNotFound",
    "SessionPage",
    "SessionStatus",
    "SessionStore",
    "SessionType",
    "StoreUnavailable",
    "get_session_store",
    "get_session_store_sync",
]
