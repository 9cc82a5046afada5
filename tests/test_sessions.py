"""The seed's test file (`pytest tests/test_sessions.py::TestSessionIntegration::
test_multi_query_session_workflow -v -s`), written from the seed's descriptions."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from sessions_app.aio import QueryRecord, SessionStatus, SessionType, get_session_store
from sessions_app.domain import AnalysisSession
from sessions_app.policies import clear_policy_cache

pytestmark = pytest.mark.django_db(transaction=True)


def run(scenario):
    """Run an async scenario on a fresh loop, closing what it opened."""

    async def wrapped():
        try:
            return await scenario()
        finally:
            await (await get_session_store()).close()
            await sync_to_async(connections.close_all)()

    clear_policy_cache()
    return asyncio.run(wrapped())


class TestSessionModels:
    def test_query_record_defaults(self):
        query = QueryRecord(query_type="price", parameters={"symbol": "AAPL"})
        assert query.cache_hit is False and query.result_summary == ""

    def test_add_query_updates_history(self, store):
        session = store.create_session(assets=["AAPL"], session_type=SessionType.EQUITY)
        session.add_query(QueryRecord(query_type="price", cache_hit=True))
        session.add_query(QueryRecord(query_type="technical"))
        history = session.state.history
        assert history.total_queries == 2 and history.cache_hit_rate == 0.5
        assert [q.query_type for q in history.get_recent_queries(1)] == ["technical"]

    def test_context_and_results(self, store):
        session = store.create_session(assets=["AAPL"], session_type=SessionType.EQUITY)
        session.state.update_context("user_preference", "detailed")
        session.state.store_intermediate_result("analysis_1", {"data": "value"})
        assert session.state.get_context("user_preference") == "detailed"
        assert session.state.get_intermediate_result("analysis_1") == {"data": "value"}

    def test_expiry_and_serialisation(self, store):
        session = store.create_session(assets=["BTC"], session_type=SessionType.CRYPTO)
        assert not session.is_expired
        copy = AnalysisSession.from_dict(session.to_dict())
        assert copy.id == session.id and copy.type == "crypto"


class TestSessionStore:
    def test_create_get_extend_end(self):
        async def scenario():
            session_store = await get_session_store()
            session = await session_store.create_session(
                assets=["AAPL", "GOOGL"],
                session_type=SessionType.EQUITY,
                user_id="store_user",
                ttl_hours=24,
            )
            loaded = await session_store.get_session(session.id)
            new_expiry = await session_store.extend_session(session.id, hours=24)
            ended = await session_store.end_session(session.id)
            return session, loaded, new_expiry, ended

        session, loaded, new_expiry, ended = run(scenario)
        assert loaded.assets == ["AAPL", "GOOGL"] and loaded.user_id == "store_user"
        assert (new_expiry - session.expires_at).total_seconds() == pytest.approx(86400, abs=1)
        assert ended.status == SessionStatus.COMPLETED and not ended.is_live

    def test_list_user_sessions_is_a_list(self):
        async def scenario():
            session_store = await get_session_store()
            for _ in range(3):
                await session_store.create_session(
                    assets=["SPY"], session_type=SessionType.PORTFOLIO, user_id="lister"
                )
            return await session_store.list_user_sessions(user_id="lister", limit=2)

        page = run(scenario)
        assert len(page) == 2 and page.next_cursor
        assert all(summary.total_queries == 0 for summary in page)

    def test_unknown_session_is_none(self):
        async def scenario():
            session_store = await get_session_store()
            return await session_store.get_session("no-such-session")

        assert run(scenario) is None


class TestSessionIntegration:
    def test_multi_query_session_workflow(self):
        async def scenario():
            session_store = await get_session_store()
            await session_store.initialize()
            session = await session_store.create_session(
                assets=["AAPL", "MSFT"],
                session_type=SessionType.COMPARATIVE,
                user_id="integration_user",
                tags=["integration"],
            )
            for i, symbol in enumerate(["AAPL", "MSFT", "AAPL", "MSFT"]):
                session = await session_store.get_session(session.id)
                session.add_query(
                    QueryRecord(
                        query_type="price",
                        parameters={"symbol": symbol},
                        result_summary=f"{symbol}: {100 + i}",
                        execution_time_ms=10.0 + i,
                        cache_hit=i >= 2,
                    )
                )
                session.state.store_intermediate_result(f"{symbol}_{i}", {"price": 100 + i})
                await session_store.update_session(session.id, session)
            session.state.update_context("comparison", "AAPL vs MSFT")
            await session_store.update_session(session.id, session)
            final = await session_store.get_session(session.id)
            print(f"\nqueries: {final.state.history.total_queries}")
            print(f"cache hit rate: {final.state.history.cache_hit_rate}")
            ended = await session_store.end_session(session.id)
            archived = await session_store.get_session(session.id)
            return final, ended, archived

        final, ended, archived = run(scenario)
        history = final.state.history
        assert history.total_queries == 4 and history.cache_hit_rate == 0.5
        recent = history.get_recent_queries(3)
        assert [q.parameters["symbol"] for q in recent] == ["MSFT", "AAPL", "MSFT"]
        assert len(final.state.intermediate_results) == 4
        assert final.state.context == {"comparison": "AAPL vs MSFT"}
        assert ended.status == "completed"
        assert not archived.is_live and archived.query_count == 4
        assert archived.state.context == {"comparison": "AAPL vs MSFT"}
