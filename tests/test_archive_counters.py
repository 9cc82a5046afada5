"""Issue 10: the AIECS counters (request_count, total_processing_time) and the tool-duration sum
survive the archive, read back from Postgres, show on the session page and count in analytics."""

import pytest
from django.urls import reverse

from sessions_app import analytics
from sessions_app.archive import scripts as archive_scripts
from sessions_app.models import DailyMetric, Session
from sessions_app.store import get_session_store

pytestmark = pytest.mark.django_db


def _counted_session(user_id: str):
    store = get_session_store()
    session = store.create_session(session_id=None, user_id=user_id, metadata={"a": 1})
    for seconds in (1.25, 2.5, 0.25):
        store.update_session(session.id, increment_requests=True, add_processing_time=seconds)
    store.record_tool_call(session.id, tool_name="search", duration_ms=120.5)
    store.record_tool_call(session.id, tool_name="fetch", duration_ms=79.5)
    return store, session


def test_the_snapshot_reads_the_archived_counters():
    for name in ("request_count", "total_processing_time", "tool_duration_ms"):
        assert name in archive_scripts.META_FIELDS
        assert f"'{name}'" in archive_scripts.SNAPSHOT


def test_counters_survive_the_archive_and_read_back(admin_client):
    store, session = _counted_session("aiecs-user")
    live = store.get_session(session.id)
    assert (live.request_count, live.total_processing_time, live.tool_duration_ms) == (
        3,
        4.0,
        200.0,
    )
    assert store.archive_session(session.id)
    row = Session.objects.get(id=session.id)
    assert (row.request_count, row.total_processing_time, row.tool_duration_ms) == (3, 4.0, 200.0)

    archived = store.get_session(session.id)
    assert not archived.is_live
    assert archived.request_count == 3
    assert archived.total_processing_time == 4.0
    assert archived.tool_duration_ms == 200.0

    body = admin_client.get(reverse("dashboard:session", args=[session.id])).content.decode()
    assert 'data-counter="request_count"' in body and ">3<" in body
    assert 'data-counter="total_processing_time"' in body and ">4.0s<" in body
    assert 'data-counter="tool_duration_ms"' in body and ">200 ms<" in body


def test_analytics_count_archived_requests_and_processing_time():
    store, first = _counted_session("aiecs-a")
    _, second = _counted_session("aiecs-b")
    store.archive_session(first.id)
    store.archive_session(second.id)
    # Folded into the day's rollup by the archiver, in the writing transaction.
    assert DailyMetric.objects.filter(requests=6).exists()
    stats = analytics.get_session_stats(days=1)
    assert stats["total_requests"] == 6
    assert stats["total_processing_time"] == 8.0
    user = analytics.get_session_stats(user_id="aiecs-a", days=1)
    assert user["total_requests"] == 3 and user["total_processing_time"] == 4.0


def test_analytics_totals_count_live_sessions_counters():
    """Issue 10: queries, errors, cache hits, tokens, cost and requests of sessions still in
    Redis add to the totals, by type and by user too."""
    from sessions_app.domain import QueryRecord

    store = get_session_store()
    live = store.create_session(assets=["AAPL"], session_type="equity", user_id="live-u")
    store.add_query(live.id, QueryRecord(query_type="price", cache_hit=True))
    store.add_query(live.id, QueryRecord(query_type="price", error="boom"))
    store.record_tool_call(live.id, tool_name="t", tokens_in=10, tokens_out=5, cost=0.25)
    store.update_session(live.id, increment_requests=True, add_processing_time=1.5)
    store.create_session(assets=["BTC"], session_type="crypto", user_id="other")

    stats = analytics.get_session_stats(days=1)
    assert stats["archived_sessions"] == 0 and stats["active_sessions"] == 2
    assert (stats["total_queries"], stats["cache_hits"], stats["total_errors"]) == (2, 1, 1)
    assert (stats["total_tool_calls"], stats["tokens_in"], stats["tokens_out"]) == (1, 10, 5)
    assert stats["total_cost"] == 0.25
    assert (stats["total_requests"], stats["total_processing_time"]) == (1, 1.5)
    assert stats["live_counters_complete"] is True
    assert analytics.get_session_stats(session_type="crypto", days=1)["total_queries"] == 0
    assert analytics.get_session_stats(user_id="live-u", days=1)["total_queries"] == 2
    assert analytics.get_session_stats(user_id="other", days=1)["total_queries"] == 0


def test_live_totals_are_bounded_and_say_so(monkeypatch):
    from sessions_app.store import core

    store = get_session_store()
    for _ in range(3):
        session = store.create_session(assets=["AAPL"], session_type="equity", user_id="many")
        store.update_session(session.id, increment_requests=True)
    assert store.live_totals()["request_count"] == 3
    monkeypatch.setattr(core, "LIVE_TOTALS_LIMIT", 2)
    totals = store.live_totals()
    assert (totals["sessions"], totals["request_count"], totals["complete"]) == (2, 2, False)
    assert analytics.get_session_stats(days=1)["live_counters_complete"] is False
