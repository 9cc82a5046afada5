"""Archived sessions read from Postgres, each read in a sync and a native async (async ORM) form.

The store's front-ends call these when a session is not live (or to merge archived rows in).
"""

from __future__ import annotations

from datetime import UTC, datetime

from asgiref.sync import sync_to_async
from django.db.models import Q

from sessions_app.archive import timeline as archived_timeline
from sessions_app.domain import (
    AnalysisHistory,
    AnalysisSession,
    Loaded,
    SessionState,
    SessionSummary,
    TimelineEvent,
)
from sessions_app.models import Session as ArchivedSession
from sessions_app.store.codec import SUMMARY_FIELDS

SUMMARY_COLUMNS = SUMMARY_FIELDS


def _session(row: ArchivedSession, recent: list, queries: list) -> AnalysisSession:
    history = AnalysisHistory(row.query_count, row.cache_hits, row.error_count, recent, queries)
    session = AnalysisSession(
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
        event_count=row.query_count + row.message_count + row.tool_call_count,
        request_count=row.request_count,
        total_processing_time=row.total_processing_time,
        tool_duration_ms=row.tool_duration_ms,
        preferences=row.preferences,
        metadata=row.metadata,
        recent_events=recent,
        state=SessionState(row.context, row.intermediate_results, row.preferences, history),
    )
    session.loaded = Loaded({}, {}, list(row.tags), row.purpose, "")
    return session


# ---- sync -------------------------------------------------------------------------------------


def status(session_id: str) -> str | None:
    return ArchivedSession.objects.filter(id=session_id).values_list("status", flat=True).first()


def get(session_id: str, recent_events: int, recent_queries: int) -> AnalysisSession | None:
    row = ArchivedSession.objects.filter(id=session_id).first()
    if row is None:
        return None
    recent = archived_timeline.read_last(session_id, recent_events, row.archived_at)
    queries = archived_timeline.read_last_queries(session_id, recent_queries, row.archived_at)
    return _session(row, recent, queries)


def recent_queries(session_id: str, n: int) -> list[TimelineEvent]:
    return archived_timeline.read_last_queries(session_id, n)


def timeline(session_id: str, offset: int, limit: int) -> tuple[list, int] | None:
    row = (
        ArchivedSession.objects.filter(id=session_id)
        .values_list("query_count", "message_count", "tool_call_count", "archived_at")
        .first()
    )
    if row is None:
        return None
    return archived_timeline.read_page(session_id, offset, limit, row[3]), sum(row[:3])


def _user_query(user_id: str, limit: int, max_score: float | None, after_id: str):
    query = ArchivedSession.objects.filter(user_id=user_id)
    if max_score is not None:
        before = datetime.fromtimestamp(max_score, tz=UTC)
        query = query.filter(Q(created_at__lt=before) | Q(created_at=before, id__lt=after_id))
    return query.order_by("-created_at", "-id").values(*SUMMARY_COLUMNS)[: limit + 1]


def user_summaries(user_id: str, limit: int, max_score, after_id: str) -> list[SessionSummary]:
    return [
        SessionSummary(**row, is_live=False)
        for row in _user_query(user_id, limit, max_score, after_id)
    ]


def _filtered(
    user_id: str | None,
    status_: str | None,
    tags: list[str] | None,
    limit: int,
    session_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
):
    query = ArchivedSession.objects.all()
    if session_type:
        query = query.filter(session_type=session_type)
    if since is not None:
        query = query.filter(created_at__gte=since)
    if until is not None:
        query = query.filter(created_at__lt=until)
    if user_id is not None:
        query = query.filter(user_id=user_id)
    if status_:
        query = query.filter(status=status_)
    if tags:
        query = query.filter(tags__contains=tags)
    return query.order_by("-created_at", "-id").values(*SUMMARY_COLUMNS)[:limit]


def filtered_summaries(user_id, status_, tags, limit, *more) -> list[SessionSummary]:
    rows = _filtered(user_id, status_, tags, limit, *more)
    return [SessionSummary(**row, is_live=False) for row in rows]


def delete(session_id: str) -> int:
    """Tombstone the session (a racing archive then skips it) and delete its archived rows;
    1 if they existed."""
    from sessions_app.archive.tombstones import delete_archived_session

    return int(delete_archived_session(session_id))


def delete_created_before(cutoff: datetime) -> int:
    from sessions_app.archive.retention import delete_archived_sessions

    ids = list(ArchivedSession.objects.filter(created_at__lt=cutoff).values_list("id", flat=True))
    return delete_archived_sessions(ids)


# ---- async (Django's async ORM: no SynchronousOnlyOperation in an event loop) ---------------


async def astatus(session_id: str) -> str | None:
    return (
        await ArchivedSession.objects.filter(id=session_id)
        .values_list("status", flat=True)
        .afirst()
    )


async def _read(function, *args):
    # The timeline reads are one raw SQL statement each: one thread hop, like the async ORM's.
    return await sync_to_async(function)(*args)


async def aget(session_id: str, recent_events: int, recent_queries: int):
    row = await ArchivedSession.objects.filter(id=session_id).afirst()
    if row is None:
        return None
    recent = await _read(archived_timeline.read_last, session_id, recent_events)
    queries = await _read(archived_timeline.read_last_queries, session_id, recent_queries)
    return _session(row, recent, queries)


async def arecent_queries(session_id: str, n: int) -> list[TimelineEvent]:
    return await _read(archived_timeline.read_last_queries, session_id, n)


async def atimeline(session_id: str, offset: int, limit: int):
    row = (
        await ArchivedSession.objects.filter(id=session_id)
        .values_list("query_count", "message_count", "tool_call_count")
        .afirst()
    )
    if row is None:
        return None
    events = await _read(archived_timeline.read_page, session_id, offset, limit)
    return events, sum(row)


async def auser_summaries(user_id: str, limit: int, max_score, after_id: str):
    query = _user_query(user_id, limit, max_score, after_id)
    return [SessionSummary(**row, is_live=False) async for row in query]


async def afiltered_summaries(user_id, status_, tags, limit, *more) -> list[SessionSummary]:
    query = _filtered(user_id, status_, tags, limit, *more)
    return [SessionSummary(**row, is_live=False) async for row in query]


async def adelete(session_id: str) -> int:
    # The tombstone, its advisory lock and the rollup unfold run in one transaction, which the
    # async ORM cannot hold: one thread hop for this rare call.
    return await sync_to_async(delete)(session_id)


async def adelete_created_before(cutoff: datetime) -> int:
    ids = [
        i
        async for i in ArchivedSession.objects.filter(created_at__lt=cutoff).values_list(
            "id", flat=True
        )
    ]
    deleted = 0
    for session_id in ids:
        deleted += await adelete(session_id)
    return deleted
