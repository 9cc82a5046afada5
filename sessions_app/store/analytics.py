"""The FIML seed's SessionAnalytics over our analytics selectors (sync and async forms)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async


class SessionAnalytics:
    """`SessionAnalytics(session_store._session_maker)`: stats, user summaries, exports."""

    def __init__(self, session_maker: Any = None):
        self._session_maker = session_maker  # kept for the seed's signature; not needed

    def get_session_stats(self, user_id: str | None = None, session_type=None, days: int = 30):
        from sessions_app import analytics

        return analytics.get_session_stats(
            user_id=user_id, session_type=getattr(session_type, "value", session_type), days=days
        )

    def get_user_session_summary(self, user_id: str, days: int = 30):
        from sessions_app import analytics

        return analytics.get_user_session_summary(user_id, days=days)

    def export_session_metrics(self, format: str = "csv", session_type=None, days: int = 30):
        from sessions_app import analytics

        return analytics.export_session_metrics(
            format, getattr(session_type, "value", session_type), days
        )


class AsyncSessionAnalytics(SessionAnalytics):
    """The same, awaitable. The selectors' SQL runs in Django's sync thread (they are
    reporting queries, not the request path the native async store serves)."""

    async def get_session_stats(self, user_id=None, session_type=None, days: int = 30):
        return await sync_to_async(super().get_session_stats)(user_id, session_type, days)

    async def get_user_session_summary(self, user_id: str, days: int = 30):
        return await sync_to_async(super().get_user_session_summary)(user_id, days)

    async def export_session_metrics(self, format: str = "csv", session_type=None, days=30):
        return await sync_to_async(super().export_session_metrics)(format, session_type, days)
