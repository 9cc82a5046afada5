"""The seeds' own examples, kept as close to their text as Python allows; only the imports
(and what the seeds left to the reader, such as the agent) differ. Marked `# seed:` where a
line had to change."""

import asyncio
import logging
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from sessions_app.aio import (
    QueryRecord,
    SessionAnalytics,
    SessionType,
    get_session_store,
)
from sessions_app.policies import clear_policy_cache
from sessions_app.store import SessionStatus
from sessions_app.store import get_session_store as get_sync_store

pytestmark = pytest.mark.django_db(transaction=True)
logger = logging.getLogger(__name__)


def run(scenario):
    async def wrapped():
        try:
            return await scenario()
        finally:
            await (await get_session_store()).close()
            await sync_to_async(connections.close_all)()

    clear_policy_cache()
    return asyncio.run(wrapped())


# ---- FIML quick reference (002) -----------------------------------------------------------------


def test_fiml_quick_reference():
    async def scenario():
        session_store = await get_session_store()

        session = await session_store.create_session(
            assets=["AAPL", "GOOGL"],
            session_type=SessionType.EQUITY,
            user_id="user_123",
            ttl_hours=24,
        )

        session_id = session.id  # Save this!

        query = QueryRecord(
            query_type="price",
            parameters={"symbol": "AAPL"},
            result_summary="AAPL: $175.43 (+2.3%)",
        )

        session.add_query(query)
        await session_store.update_session(session.id, session)

        session.state.update_context("user_preference", "detailed")
        session.state.store_intermediate_result("analysis_1", {"data": "value"})
        await session_store.update_session(session.id, session)

        session = await session_store.get_session(session_id)

        print(f"Queries: {session.state.history.total_queries}")
        print(f"Cache hit rate: {session.state.history.cache_hit_rate}")
        print(f"Recent queries: {session.state.history.get_recent_queries(5)}")

        await session_store.extend_session(session_id, hours=24)

        summaries = await session_store.list_user_sessions(
            user_id="user_123",
            include_archived=False,
            limit=50,
        )

        analytics = SessionAnalytics(session_store._session_maker)
        stats = await analytics.get_session_stats(
            user_id="user_123",
            days=30,
        )
        return session, summaries, stats

    session, summaries, stats = run(scenario)
    assert session.state.history.total_queries == 1
    assert session.state.context == {"user_preference": "detailed"}
    assert session.state.intermediate_results == {"analysis_1": {"data": "value"}}
    assert [s.id for s in summaries] == [session.id]
    assert "total_sessions" in stats


async def search_by_symbol(symbol, session_id):
    """The seed's MCP tool, left to the reader: tracks the query and keeps its result."""
    session_store = await get_session_store()
    session = await session_store.get_session(session_id)
    session.add_query(QueryRecord(query_type="price", parameters={"symbol": symbol}))
    session.state.store_intermediate_result(symbol, {"price": 100.0})
    await session_store.update_session(session.id, session)


def test_fiml_comparative_workflow():
    async def scenario():
        session_store = await get_session_store()
        # 1. Create session
        session = await session_store.create_session(
            assets=["AAPL", "MSFT", "GOOGL"],
            session_type=SessionType.COMPARATIVE,
        )

        # 2. Query each asset
        for symbol in ["AAPL", "MSFT", "GOOGL"]:
            # Execute query (automatically tracked if session_id provided)
            result = await search_by_symbol(symbol, session_id=str(session.id))  # noqa: F841

        # 3. Compare results using accumulated context
        session = await session_store.get_session(session.id)
        all_results = session.state.intermediate_results
        return session, all_results

    session, all_results = run(scenario)
    assert sorted(all_results) == ["AAPL", "GOOGL", "MSFT"]
    assert session.state.history.total_queries == 3


def test_fiml_portfolio_workflow():
    async def scenario():
        session_store = await get_session_store()
        # 1. Create portfolio session
        session = await session_store.create_session(
            assets=["SPY", "QQQ", "IWM"],
            session_type=SessionType.PORTFOLIO,
            tags=["etf", "diversified"],
        )

        # 2. Analyze each holding
        # 3. Store allocation context
        session.state.update_context("allocation", {"SPY": 0.6, "QQQ": 0.3, "IWM": 0.1})

        # 4. Track performance over time
        await session_store.update_session(session.id, session)  # seed: left to the reader
        return await session_store.get_session(session.id)

    session = run(scenario)
    assert session.tags == ["etf", "diversified"]
    assert session.state.context["allocation"] == {"SPY": 0.6, "QQQ": 0.3, "IWM": 0.1}


# ---- AIECS session patterns (003), the store standing in for context_engine --------------------


class Agent:
    """The seed's agent, reduced to what the store sees: each task counts as a request."""

    def __init__(self, context_engine):
        self.context_engine = context_engine

    async def execute_task(self, task, context):
        session_id = context["session_id"]
        if await self.context_engine.get_session(session_id) is None:
            await self.context_engine.create_session(session_id=session_id)
        await self.context_engine.update_session(
            session_id=session_id, increment_requests=True, add_processing_time=0.01
        )
        return {"output": task["description"]}


def test_aiecs_patterns():
    async def scenario():
        context_engine = await get_session_store()  # seed: ContextEngine()
        await context_engine.initialize()
        agent = Agent(context_engine)

        # Pattern 1: basic lifecycle
        session_id = "user-123"
        result = await agent.execute_task({"description": "Hello"}, {"session_id": session_id})
        for i in range(5):
            result = await agent.execute_task(  # noqa: F841
                {"description": f"Request {i}"}, {"session_id": session_id}
            )
        await context_engine.end_session(session_id, status="completed")

        # Pattern 2/3: explicit creation and status management
        session = await context_engine.create_session(
            session_id="user-124",
            user_id="user-456",
            metadata={"source": "web", "device": "mobile", "ip_address": "192.168.1.1"},
        )
        assert session.status == "active"
        for i in range(10):
            await agent.execute_task({"description": f"Request {i}"}, {"session_id": "user-124"})

        # Manual metrics update, and an error
        await context_engine.update_session(
            session_id="user-124",
            increment_requests=True,
            add_processing_time=1.5,
            mark_error=False,
        )
        await context_engine.update_session(
            session_id="user-124",
            increment_requests=True,
            add_processing_time=0.1,
            mark_error=True,
        )
        session = await context_engine.get_session("user-124")
        print(f"Requests: {session.request_count}")
        print(f"Errors: {session.error_count}")
        print(f"Error rate: {session.error_count / session.request_count * 100}%")
        if session.is_expired(max_idle_seconds=1800):
            await context_engine.end_session("user-124", status="expired")

        # Metrics aggregation
        all_sessions = await context_engine.list_sessions(user_id="user-456")
        total_requests = sum(  # seed: summaries carry no counters; read each session
            [(await context_engine.get_session(s.id)).request_count for s in all_sessions]
        )

        # Health monitoring and custom cleanup
        if session.request_count > 0:
            error_rate = session.error_count / session.request_count
            if error_rate > 0.3:
                logger.warning(f"Session {session.session_id} has high error rate: {error_rate}")

        # Temporary sessions and cleanup
        temp = await context_engine.create_session(session_id="temp-1", user_id="user-456")
        cleaned_count = await context_engine.cleanup_inactive_sessions(max_idle_seconds=0)
        print(f"Cleaned up {cleaned_count} inactive sessions")

        # Session limits
        active_sessions = await context_engine.list_sessions(status="active")
        ended = await context_engine.get_session("user-123")
        return session, total_requests, cleaned_count, active_sessions, ended, temp

    session, total_requests, cleaned_count, active, ended, temp = run(scenario)
    assert (session.request_count, session.error_count) == (12, 1)
    assert session.total_processing_time == pytest.approx(10 * 0.01 + 1.6)
    assert total_requests == 12
    assert cleaned_count == 2  # user-124 and temp-1 were idle "longer than 0 s"
    assert active == []
    assert ended.status == "completed" and ended.request_count == 6  # the archive keeps it
    assert temp.id == "temp-1"


# ---- MCP session manager (004), synchronous -----------------------------------------------------


def test_mcp_manager_usage(store):
    manager = get_sync_store()  # seed: SessionManager(FileSystemSessionStorage(...))

    # Basic usage
    session = manager.create_session(
        purpose="Debug authentication issue", user_id="user123", tags=["bug-fix", "authentication"]
    )
    manager.add_conversation_message(
        session_id=session.id,  # seed: session.metadata.session_id
        role="user",
        content="What files were changed?",
    )
    manager.link_invocation(
        session_id=session.id,
        invocation_id="inv_001",
        tool_name="git_tool",
        invocation_dir=Path(".history/2024-11-06_14-23-45_123456_git_tool"),
        duration_ms=150.5,
    )
    manager.complete_session(session.id)

    # Multi-tool workflow
    session = manager.create_session(
        purpose="Investigate production issue", tags=["production", "urgent"]
    )
    for tool_name in ["git_tool", "log_analysis", "knowledge_indexer"]:
        manager.link_invocation(
            session_id=session.id,
            invocation_id=f"inv_{tool_name}",
            tool_name=tool_name,
            invocation_dir=Path(f".history/invocation_{tool_name}"),
            duration_ms=100.0,
        )
        manager.add_conversation_message(
            session_id=session.id, role="tool", content="Analysis complete", tool_name=tool_name
        )
    stats = manager.get_session_statistics(session.id)
    print(f"Used {len(stats['tools_used'])} tools in {stats['total_duration_ms']}ms")
    assert stats["tools_used"] == ["git_tool", "knowledge_indexer", "log_analysis"]
    assert stats["total_duration_ms"] == 300.0 and stats["messages_by_role"] == {"tool": 3}

    # Querying sessions
    active = manager.list_sessions(status=SessionStatus.ACTIVE)
    user_sessions = manager.list_sessions(user_id="user123")
    bug_sessions = manager.list_sessions(tags=["bug-fix"])
    urgent_bugs = manager.list_sessions(
        tags=["bug-fix", "urgent"], status=SessionStatus.ACTIVE, limit=10
    )
    assert [s.id for s in active] == [session.id]
    assert len(user_sessions) == 1 and user_sessions[0].status == "completed"
    assert len(bug_sessions) == 1 and urgent_bugs == []

    investigation = session

    # Session lifecycle
    session = manager.create_session(session_id="my_session")
    assert session.session_type == "agent"
    manager.update_session_metadata(
        session_id="my_session",
        purpose="Updated purpose",
        tags=["new-tag"],
        custom_metadata={"priority": "high"},
    )
    updated = manager.get_session("my_session")
    assert (updated.purpose, updated.tags, updated.metadata) == (
        "Updated purpose",
        ["new-tag"],
        {"priority": "high"},
    )
    manager.complete_session("my_session", SessionStatus.COMPLETED)
    manager.delete_session("my_session")
    assert manager.get_session("my_session") is None
    assert manager.cleanup_old_sessions(max_age_days=30) == 0  # nothing is 30 days old here
    assert manager.get_session(investigation.id) is not None
    assert manager.cleanup_old_sessions(max_age_days=0) == 2  # both remaining sessions
    assert manager.get_session(investigation.id) is None
