"""The FIML quick reference's workflows against this project's store; prints what happened.

    make demo                      # embedded or configured Postgres and Redis
    python examples/session_demo.py

The seed's code runs as written; only its imports point at `sessions_app.aio`.
"""

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fimlsessions.settings")

import django

django.setup()

from sessions_app.aio import (  # noqa: E402
    QueryRecord,
    SessionAnalytics,
    SessionType,
    get_session_store,
)


async def search_by_symbol(symbol: str, session_id: str) -> dict:
    """Stands in for the seed's MCP tool: records the query and its result in the session."""
    session_store = await get_session_store()
    session = await session_store.get_session(session_id)
    result = {"symbol": symbol, "price": 100.0 + len(symbol)}
    session.add_query(QueryRecord(query_type="price", parameters={"symbol": symbol}))
    session.state.store_intermediate_result(symbol, result)
    await session_store.update_session(session.id, session)
    return result


async def main() -> None:
    session_store = await get_session_store()
    await session_store.initialize()

    # Quick start: create, track a query, store context, read it back.
    session = await session_store.create_session(
        assets=["AAPL", "GOOGL"],
        session_type=SessionType.EQUITY,
        user_id="user_123",
        ttl_hours=24,
    )
    session_id = session.id  # Save this!
    print(f"created {session.session_type} session {session_id}")

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
    print(f"Recent queries: {[q.query_type for q in session.state.history.get_recent_queries(5)]}")

    await session_store.extend_session(session_id, hours=24)
    summaries = await session_store.list_user_sessions(
        user_id="user_123",
        include_archived=False,
        limit=50,
    )
    print(f"user_123 has {len(summaries)} live session(s)")

    # Comparative analysis.
    session = await session_store.create_session(
        assets=["AAPL", "MSFT", "GOOGL"],
        session_type=SessionType.COMPARATIVE,
    )
    for symbol in ["AAPL", "MSFT", "GOOGL"]:
        await search_by_symbol(symbol, session_id=str(session.id))
    session = await session_store.get_session(session.id)
    all_results = session.state.intermediate_results
    print(f"comparative results: {sorted(all_results)}")

    # Portfolio analysis.
    session = await session_store.create_session(
        assets=["SPY", "QQQ", "IWM"],
        session_type=SessionType.PORTFOLIO,
        tags=["etf", "diversified"],
    )
    session.state.update_context("allocation", {"SPY": 0.6, "QQQ": 0.3, "IWM": 0.1})
    await session_store.update_session(session.id, session)
    print(f"portfolio allocation: {(await session_store.get_session(session.id)).state.context}")

    # Analytics (archived sessions; today's live ones show on the dashboard's live page).
    analytics = SessionAnalytics(session_store._session_maker)
    stats = await analytics.get_session_stats(user_id="user_123", days=30)
    print(f"analytics for user_123: {stats['total_sessions']} archived session(s)")

    ended = await session_store.end_session(session_id)
    print(f"ended {ended.id}: {ended.status}, archived={not ended.is_live}")
    await session_store.close()


if __name__ == "__main__":
    asyncio.run(main())
