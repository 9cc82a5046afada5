"""The seed quick reference's workflows, end to end through the store API (Redis + Postgres)."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest

from sessions_app.exceptions import InvalidTTL, SessionNotActive
from sessions_app.models import Session
from sessions_app.store import QueryRecord, SessionType
from tests.factories import event_rows

pytestmark = pytest.mark.django_db


def test_track_queries(store):
    session = store.create_session(
        assets=["AAPL", "GOOGL"],
        session_type=SessionType.EQUITY,
        user_id="user_123",
        ttl_hours=24,
        tags=["etf"],
        purpose="Daily equity check",
    )
    store.add_query(
        session.id,
        QueryRecord(
            query_type="price",
            parameters={"symbol": "AAPL"},
            result_summary="AAPL: $175.43 (+2.3%)",
            execution_time_ms=12.5,
            cache_hit=True,
        ),
    )
    store.add_query(
        session.id,
        QueryRecord(
            query_type="fundamentals",
            parameters={"symbol": "GOOGL", "metrics": ["pe", "eps"]},
            result_summary="GOOGL P/E 24.1",
            execution_time_ms=48.0,
        ),
    )
    s = store.get_session(session.id)
    assert s.state.history.total_queries == 2
    assert s.state.history.cache_hits == 1
    assert s.state.history.cache_hit_rate == 0.5
    recent = s.state.history.get_recent_queries(5)
    assert [q.query_type for q in recent] == ["price", "fundamentals"]
    assert recent[0].parameters == {"symbol": "AAPL"}
    assert recent[0].result_summary == "AAPL: $175.43 (+2.3%)"
    assert recent[0].cache_hit is True and recent[1].execution_ms == 48.0
    assert s.total_execution_ms == pytest.approx(60.5)


def test_store_context_and_intermediate_results(store):
    session = store.create_session(assets=["SPY", "QQQ", "IWM"], session_type="portfolio")
    store.update_context(session.id, "allocation", {"SPY": 0.6, "QQQ": 0.3, "IWM": 0.1})
    store.update_context(session.id, "risk_tolerance", "moderate")
    store.update_context(session.id, "risk_tolerance", "low")  # replaces only this key
    store.store_intermediate_result(session.id, "analysis_1", {"data": "value"})
    s = store.get_session(session.id)
    assert s.state.context == {
        "allocation": {"SPY": 0.6, "QQQ": 0.3, "IWM": 0.1},
        "risk_tolerance": "low",
    }
    assert s.state.intermediate_results == {"analysis_1": {"data": "value"}}


def test_get_session_info(store):
    session = store.create_session(
        assets=["BTC", "ETH"], session_type=SessionType.CRYPTO, user_id="user_9", ttl_hours=2
    )
    s = store.get_session(session.id)
    assert s.is_live and s.status == "active"
    assert s.assets == ["BTC", "ETH"] and s.session_type == "crypto" and s.user_id == "user_9"
    assert s.expires_at - s.created_at == timedelta(hours=2)
    assert store.get_session("00000000-0000-0000-0000-000000000000") is None


def test_extend_session(store):
    session = store.create_session(assets=["AAPL"], ttl_hours=24)
    new_expiry = store.extend_session(session.id, hours=24)
    assert new_expiry == session.expires_at + timedelta(hours=24)
    assert store.get_session(session.id).expires_at == new_expiry
    # Capped at the policy's max TTL (168 h) with a clear error, the session unchanged.
    with pytest.raises(InvalidTTL) as error:
        store.extend_session(session.id, hours=500)
    assert error.value.field == "hours" and "max TTL" in error.value.reason
    assert store.get_session(session.id).expires_at == new_expiry


def test_list_user_sessions_live_and_archived(store):
    created = [
        store.create_session(assets=["AAPL"], user_id="user_123", tags=[f"t{i}"]) for i in range(3)
    ]
    store.create_session(assets=["MSFT"], user_id="someone_else")
    page = store.list_user_sessions(user_id="user_123", limit=2)
    assert [s.id for s in page.items] == [created[2].id, created[1].id]
    assert page.next_cursor
    rest = store.list_user_sessions(user_id="user_123", limit=2, cursor=page.next_cursor)
    assert [s.id for s in rest.items] == [created[0].id] and rest.next_cursor is None

    store.end_session(created[0].id, "completed")  # archived right away
    live_only = store.list_user_sessions(user_id="user_123")
    assert {s.id for s in live_only.items} == {created[1].id, created[2].id}
    everything = store.list_user_sessions(user_id="user_123", include_archived=True)
    assert [s.id for s in everything.items] == [c.id for c in reversed(created)]
    assert [s.is_live for s in everything.items] == [True, True, False]


def test_comparative_analysis_example(store):
    session = store.create_session(
        assets=["AAPL", "MSFT", "GOOGL"],
        session_type=SessionType.COMPARATIVE,
        user_id="analyst_1",
        tags=["big-tech", "q3"],
        purpose="Compare big tech valuations",
    )
    for symbol in ("AAPL", "MSFT", "GOOGL"):
        store.add_query(
            session.id,
            QueryRecord(
                query_type="fundamentals",
                parameters={"symbol": symbol},
                result_summary=f"{symbol} fundamentals",
                execution_time_ms=20.0,
                cache_hit=symbol == "MSFT",
            ),
        )
    store.add_query(
        session.id,
        QueryRecord(query_type="comparison", parameters={"symbols": ["AAPL", "MSFT", "GOOGL"]}),
    )
    store.add_message(session.id, role="user", content="Which is cheapest on P/E?")
    store.record_tool_call(
        session.id,
        tool_name="git_tool",
        invocation_id="inv_1",
        duration_ms=150.5,
        tokens_in=120,
        tokens_out=40,
        cost=0.0012,
    )
    store.add_message(session.id, role="assistant", content="GOOGL, at 24x earnings.")
    store.update_context(session.id, "ranking", ["GOOGL", "MSFT", "AAPL"])

    ended = store.end_session(session.id, status="completed")
    assert not ended.is_live and ended.status == "completed"
    row = Session.objects.get(pk=session.id)
    assert (row.query_count, row.cache_hits, row.message_count, row.tool_call_count) == (4, 1, 2, 1)
    assert row.tokens_in == 120 and row.cost == Decimal("0.001200")
    assert row.tags == ["big-tech", "q3"] and row.context == {"ranking": ["GOOGL", "MSFT", "AAPL"]}
    kinds = [row.kind for row in event_rows(session.id)]
    assert kinds == ["query"] * 4 + ["message", "tool_call", "message"]
    # Read back through the store, from Postgres now.
    archived = store.get_session(session.id)
    assert archived.state.history.total_queries == 4
    assert archived.state.history.cache_hit_rate == 0.25
    assert [q.parameters for q in archived.state.history.get_recent_queries(2)] == [
        {"symbol": "GOOGL"},
        {"symbols": ["AAPL", "MSFT", "GOOGL"]},
    ]
    with pytest.raises(SessionNotActive):
        store.add_query(session.id, QueryRecord(query_type="price"))


def test_portfolio_analysis_example(store):
    session = store.create_session(
        assets=["SPY", "QQQ", "IWM"],
        session_type=SessionType.PORTFOLIO,
        user_id="pm_7",
        ttl_hours=1,
        preferences={"currency": "USD"},
    )
    store.update_context(session.id, "allocation", {"SPY": 0.6, "QQQ": 0.3, "IWM": 0.1})
    store.add_query(
        session.id,
        QueryRecord(query_type="risk", parameters={"metric": "var", "confidence": 0.95}),
    )
    store.add_query(session.id, QueryRecord(query_type="correlation", error="upstream timeout"))
    store.store_intermediate_result(session.id, "var_95", {"value": -0.021})
    s = store.get_session(session.id)
    assert s.error_count == 1 and s.state.preferences == {"currency": "USD"}

    # Never ended: it expires, and the cleanup archives it with everything.
    counts = store.cleanup_expired_sessions(now=time.time() + 2 * 3600)
    assert counts["archived"] == 1 and counts["expired"] == 1
    archived = store.get_session(session.id)
    assert not archived.is_live and archived.status == "expired"
    assert archived.state.context == {"allocation": {"SPY": 0.6, "QQQ": 0.3, "IWM": 0.1}}
    assert archived.state.intermediate_results == {"var_95": {"value": -0.021}}
    assert archived.state.preferences == {"currency": "USD"}
    assert archived.error_count == 1 and archived.query_count == 2

    assert store.delete_session(session.id) is True
    assert store.get_session(session.id) is None
    assert not event_rows(session.id)


def test_archive_session_through_the_store(store):
    session = store.create_session(assets=["AAPL"], user_id="u")
    store.add_message(session.id, role="user", content="hello")
    assert store.archive_session(session.id) is True
    archived = store.get_session(session.id)
    assert not archived.is_live and archived.message_count == 1
    assert archived.archived_at is not None
