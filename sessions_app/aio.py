"""The seeds' async session API: `from sessions_app.aio import get_session_store, ...`.

session_store = await get_session_store()
await session_store.initialize()
session = await session_store.create_session(assets=["AAPL"], session_type=SessionType.EQUITY)
session.add_query(QueryRecord(query_type="price", parameters={"symbol": "AAPL"}))
await session_store.update_session(session.id, session)
"""

from sessions_app.domain import AnalysisSession, QueryRecord, SessionList, SessionSummary
from sessions_app.models import SessionStatus, SessionType
from sessions_app.store.aio import AsyncSessionStore
from sessions_app.store.aio import get_async_session_store as get_session_store
from sessions_app.store.analytics import AsyncSessionAnalytics as SessionAnalytics

Session = AnalysisSession

__all__ = [
    "AnalysisSession",
    "AsyncSessionStore",
    "QueryRecord",
    "Session",
    "SessionAnalytics",
    "SessionList",
    "SessionStatus",
    "SessionSummary",
    "SessionType",
    "get_session_store",
]
