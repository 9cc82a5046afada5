"""The client SDK against a real server: gunicorn on a free loopback port (conftest.py)."""

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from fiml_sessions_client import (
    AsyncSessionStore,
    InvalidInput,
    QueryRecord,
    Retry,
    SessionAlreadyExists,
    SessionNotActive,
    SessionType,
    get_session_store,
    get_session_store_sync,
)

SRC = Path(__file__).resolve().parents[1] / "src"


class CountingTransport(httpx.HTTPTransport):
    """Counts ingest requests; with `lose_first`, the first ingest lands but its answer is lost."""

    def __init__(self, lose_first: bool = False):
        super().__init__()
        self.ingests = 0
        self.lose_first = lose_first

    def handle_request(self, request):
        response = super().handle_request(request)
        if request.url.path.endswith("/ingest"):
            self.ingests += 1
            if self.lose_first and self.ingests == 1:
                response.read()
                raise httpx.ReadTimeout("answer lost", request=request)
        return response


def test_sync_store_batches_writes_and_reads_them_back(live_api):
    server, key = live_api
    transport = CountingTransport()
    store = get_session_store_sync(
        server.url, key, batch_size=100, flush_interval=60, transport=transport
    )
    session = store.create_session(
        assets=["AAPL", "MSFT"], session_type=SessionType.EQUITY, user_id="sdk-user", tags=["t"]
    )
    for i in range(250):
        store.add_query(session.id, QueryRecord("price", {"i": i}, cache_hit=i % 2 == 0))
    assert transport.ingests == 2  # two full batches sent; 50 writes still buffered
    store.add_message(session.id, "user", "compare them")
    store.record_tool_call(session.id, "get_quote", invocation_id="inv-1", duration_ms=12.5)
    store.update_context(session.id, "watchlist", ["AAPL"])
    store.store_intermediate_result(session.id, "analysis_1", {"data": "value"})

    read = store.get_session(session.id)  # flushes first
    assert transport.ingests == 3
    assert read.state.history.total_queries == 250
    assert read.state.history.cache_hit_rate == 0.5
    assert read.message_count == 1 and read.tool_call_count == 1
    assert read.state.context == {"watchlist": ["AAPL"]}
    assert read.state.intermediate_results == {"analysis_1": {"data": "value"}}
    assert store.report.accepted == 254 and not store.report.errors
    page = store.list_user_sessions("sdk-user")
    assert [item.id for item in page.items] == [session.id]
    ended = store.end_session(session.id)
    assert ended.status == "completed"
    store.close()


def test_rejected_write_is_reported_not_raised(live_api):
    server, key = live_api
    with get_session_store_sync(server.url, key, flush_interval=60) as store:
        session = store.create_session(session_type="crypto")
        store.add_query(session.id, QueryRecord("price", execution_time_ms=-5))
        store.add_query(session.id, QueryRecord("price"))
        store.flush()
        assert store.report.accepted == 1
        (error,) = store.report.errors
        assert error["error"]["field"] == "execution_time_ms"
        assert error["operation"]["execution_time_ms"] == -5
        with pytest.raises(InvalidInput) as raised:
            store.create_session(session_type="nonsense")
        assert raised.value.field == "session_type"


def test_track_query_times_records_errors_and_summaries(live_api):
    server, key = live_api
    with get_session_store_sync(server.url, key, flush_interval=60) as store:
        session = store.create_session(session_type="equity")

        with store.track_query(session.id, "search_by_symbol", {"symbol": "AAPL"}) as q:
            q.result_summary = "AAPL 189.42"

        @store.track_query(session.id, "price_history", {"symbol": "MSFT"})
        def history():
            return [1, 2, 3]

        assert history() == [1, 2, 3]
        with (
            pytest.raises(RuntimeError),
            store.track_query(session.id, "fundamentals", {"symbol": "X"}),
        ):
            raise RuntimeError("provider down")
        events = store.get_session(session.id).recent_events
    assert [e.query_type for e in events] == ["search_by_symbol", "price_history", "fundamentals"]
    assert events[0].result_summary == "AAPL 189.42"
    assert events[1].result_summary == "[1, 2, 3]"
    assert events[2].error == "RuntimeError: provider down"
    assert all(e.execution_ms is not None and e.execution_ms >= 0 for e in events)


def test_async_store_has_the_seed_api(live_api):
    server, key = live_api

    async def scenario():
        store = await get_session_store(url=server.url, api_key=key, batch_size=10)
        assert isinstance(store, AsyncSessionStore)
        session = await store.create_session(
            assets=["BTC-USD"], session_type=SessionType.CRYPTO, user_id="async-user"
        )
        for symbol in ("BTC", "ETH"):
            await store.add_query(session.id, QueryRecord("price", {"symbol": symbol}))

        @store.track_query(session.id, "search_by_symbol", {"symbol": "SOL"})
        async def search():
            await asyncio.sleep(0.01)
            return "SOL 150"

        assert await search() == "SOL 150"
        async with store.track_query(session.id, "news") as q:
            q.cache_hit = True
        await store.extend_session(session.id, hours=1)
        read = await store.get_session(session.id)
        ended = await store.end_session(session.id, status="failed")
        with pytest.raises(SessionNotActive):
            await store.extend_session(session.id, hours=1)
        assert await store.get_session("00000000-0000-0000-0000-000000000000") is None
        await store.aclose()
        return read, ended

    read, ended = asyncio.run(scenario())
    assert read.state.history.total_queries == 4
    assert read.state.history.cache_hits == 1
    assert read.recent_events[2].result_summary == "SOL 150"
    assert read.recent_events[2].execution_ms >= 10
    assert ended.status == "failed"


def test_flushed_at_exit(live_api, tmp_path):
    server, key = live_api
    with get_session_store_sync(server.url, key) as store:
        session = store.create_session(session_type="macro")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(SRC)!r})
        from fiml_sessions_client import QueryRecord, get_session_store_sync
        store = get_session_store_sync({server.url!r}, {key!r}, flush_interval=3600)
        for i in range(7):
            store.add_query({str(session.id)!r}, QueryRecord("rates", {{"i": i}}))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)  # never closes
    with get_session_store_sync(server.url, key) as store:
        assert store.get_session(session.id).query_count == 7


def test_retry_after_a_lost_answer_records_each_event_once(live_api):
    server, key = live_api
    transport = CountingTransport(lose_first=True)
    retry = Retry(attempts=3, base=0.01)
    with get_session_store_sync(
        server.url, key, flush_interval=60, transport=transport, retry=retry
    ) as store:
        session = store.create_session(session_type="equity")
        for _ in range(3):
            store.add_query(session.id, QueryRecord("price"))
        store.flush()
        assert transport.ingests == 2  # the lost one and its retry, with the same event ids
        assert store.report.duplicate == 3
        assert store.get_session(session.id).query_count == 3


def test_aiecs_and_mcp_manager_methods(live_api):
    server, key = live_api
    with get_session_store_sync(server.url, key, flush_interval=60) as store:
        session = store.create_session(
            session_type="agent", user_id="mgr-user", tags=["bug-fix"], session_id="user-123-web"
        )
        assert session.id == "user-123-web"
        store.update_session(session.id, increment_requests=True, add_processing_time=1.5)
        store.update_session(session.id, increment_requests=True, mark_error=True)
        store.add_conversation_message(session.id, "user", "What files were changed?")
        store.link_invocation(session.id, "inv_001", "git_tool", duration_ms=150.5)
        store.update_session_metadata(
            session.id, purpose="Debug auth", tags=["bug-fix", "urgent"], custom_metadata={"p": 1}
        )
        read = store.get_session(session.id)
        assert (read.request_count, read.error_count) == (2, 1)
        assert read.total_processing_time == 1.5
        assert (read.purpose, read.tags, read.metadata) == (
            "Debug auth",
            ["bug-fix", "urgent"],
            {"p": 1},
        )
        stats = store.get_session_statistics(session.id)
        assert stats["tools_used"] == ["git_tool"]
        assert stats["total_duration_ms"] == 150.5
        urgent = store.list_sessions(tags=["bug-fix", "urgent"], status="active")
        assert [item.id for item in urgent.items] == ["user-123-web"]
        with pytest.raises(SessionAlreadyExists):
            store.create_session(session_type="agent", session_id="user-123-web")
        done = store.complete_session(session.id)
        assert done.status == "completed"
        assert store.get_session_statistics("no-such-session") is None


def test_a_batch_too_big_for_the_server_is_split(live_api):
    server, key = live_api
    content = "x" * 30_000  # 100 of these pass Django's 2.5 MB upload limit
    with get_session_store_sync(server.url, key, batch_size=100, flush_interval=60) as store:
        session = store.create_session(session_type="agent")
        for _ in range(100):
            store.add_message(session.id, "assistant", content)
        store.flush()
        assert store.report.accepted == 100 and not store.report.errors
        assert store.get_session(session.id).message_count == 100
