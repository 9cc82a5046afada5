"""The seeds' session API on our store: deltas, caller-chosen ids, event ids, async, AIECS and
MCP-manager calls, and the races between them (real Redis and Postgres, threads and asyncio)."""

import asyncio
import base64
import threading
import time

import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import connection, connections

from sessions_app import aio
from sessions_app.exceptions import (
    IdempotencyKeyReused,
    InvalidInput,
    InvalidTTL,
    SessionAlreadyExists,
    SessionNotActive,
    StoreUnavailable,
)
from sessions_app.policies import clear_policy_cache
from sessions_app.store import QueryRecord, Session, SessionStatus
from sessions_app.store import keys as skeys
from sessions_app.store.aio import AsyncSessionStore
from sessions_app.store.errors import unavailable

pytestmark = pytest.mark.django_db

CLIENTS = 50


async def close_async_db():
    """Close the connection of the thread the async ORM ran in (else teardown waits on it)."""
    await sync_to_async(connections.close_all)()


def run_threads(n, target):
    """Run target(i) in n threads started together; returns results or exceptions by index."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def work(i):
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# ---- read-modify-write as deltas -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_fifty_threads_read_modify_write_lose_nothing(store):
    session = store.create_session(assets=["AAPL"], session_type="equity")

    def client(i):
        mine = store.get_session(session.id)
        mine.add_query(QueryRecord(query_type="price", parameters={"client": i}))
        mine.state.update_context(f"client_{i}", i)
        return store.update_session(mine.id, mine)

    results = run_threads(CLIENTS, client)
    assert not [r for r in results if isinstance(r, Exception)]
    final = store.get_session(session.id)
    assert final.query_count == CLIENTS
    assert final.state.context == {f"client_{i}": i for i in range(CLIENTS)}
    events, total = store.get_timeline(session.id, limit=100)
    assert total == CLIENTS
    assert sorted(e.parameters["client"] for e in events) == list(range(CLIENTS))


@pytest.mark.django_db(transaction=True)
def test_fifty_async_clients_read_modify_write_lose_nothing():
    clear_policy_cache()  # the async store must load policies itself, without the sync ORM

    async def scenario():
        session_store = await aio.get_session_store()
        session = await session_store.create_session(
            assets=["BTC"], session_type=aio.SessionType.CRYPTO
        )

        async def client(i):
            mine = await session_store.get_session(session.id)
            mine.add_query(aio.QueryRecord(query_type="price", parameters={"client": i}))
            mine.state.update_context(f"client_{i}", i)
            await session_store.update_session(mine.id, mine)

        await asyncio.gather(*(client(i) for i in range(CLIENTS)))
        final = await session_store.get_session(session.id)
        await session_store.close()
        await close_async_db()
        return final

    final = asyncio.run(scenario())
    assert final.query_count == CLIENTS
    assert len(final.state.context) == CLIENTS


def test_update_session_writes_only_what_changed(store):
    session = store.create_session(assets=["AAPL"], session_type="equity", tags=["a"])
    other = store.get_session(session.id)
    other.state.update_context("theirs", 1)
    store.update_session(other.id, other)
    mine = store.get_session(session.id)
    stale = store.get_session(session.id)
    mine.tags = ["a", "b"]
    mine.purpose = "new purpose"
    mine.metadata = {"priority": "high"}
    mine.state.store_intermediate_result("analysis_1", {"data": "value"})
    del mine.state.context["theirs"]
    store.update_session(mine.id, mine)
    # A stale copy that changed nothing writes nothing: it does not undo the changes above.
    store.update_session(stale.id, stale)
    final = store.get_session(session.id)
    assert final.tags == ["a", "b"] and final.purpose == "new purpose"
    assert final.metadata == {"priority": "high"}
    assert final.state.intermediate_results == {"analysis_1": {"data": "value"}}
    assert final.state.context == {}


def test_a_bad_change_is_refused_whole(store):
    session = store.create_session(assets=["AAPL"], session_type="equity")
    mine = store.get_session(session.id)
    mine.add_query(QueryRecord(query_type="price"))
    mine.state.update_context("ok", 1)
    mine.state.update_context("bad", float("nan"))
    with pytest.raises(InvalidInput) as excinfo:
        store.update_session(mine.id, mine)
    assert excinfo.value.field == "value"
    final = store.get_session(session.id)
    assert final.query_count == 0 and final.state.context == {}


# ---- caller-chosen ids -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_creates_racing_for_one_id_one_wins(store):
    results = run_threads(
        2, lambda i: store.create_session(session_id="user-123", user_id=f"racer-{i}")
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1 and len(losers) == 1
    assert isinstance(losers[0], SessionAlreadyExists)
    assert store.get_session("user-123").user_id == winners[0].user_id


def test_an_archived_id_cannot_be_reused(store):
    store.create_session(session_id="desk:7@team.a", session_type="agent")
    store.end_session("desk:7@team.a")  # archives right away
    assert not store.get_session("desk:7@team.a").is_live
    with pytest.raises(SessionAlreadyExists) as excinfo:
        store.create_session(session_id="desk:7@team.a")
    assert excinfo.value.field == "session_id"
    assert store.get_session("desk:7@team.a").status == "completed"


def test_an_id_colliding_with_another_sessions_keys_is_refused(store):
    store.create_session(session_id="x")
    store.add_query("x", QueryRecord(query_type="price"))  # x's timeline key is "…:s:x:ev"
    if skeys.shard_of("x") == skeys.shard_of("x:ev"):  # one shard: the names would collide
        with pytest.raises(SessionAlreadyExists):
            store.create_session(session_id="x:ev")
    else:  # in another shard "x:ev"'s keys are other names: both sessions stand apart
        store.create_session(session_id="x:ev")
        assert store.get_session("x:ev").query_count == 0
    assert store.get_session("x").query_count == 1


@pytest.mark.django_db(transaction=True)
def test_update_metadata_racing_end_never_writes_after_the_end(store):
    for round_ in range(10):
        session = store.create_session(session_id=f"race-{round_}", purpose="before")
        results = run_threads(
            2,
            lambda i, sid=session.id: (
                store.update_session_metadata(sid, purpose="after")
                if i == 0
                else store.end_session(sid, archive=False)
            ),
        )
        final = store.get_session(session.id)
        assert final.status == "completed"
        if isinstance(results[0], Exception):
            assert isinstance(results[0], SessionNotActive)
            assert final.purpose == "before"
        else:
            assert final.purpose == "after"


# ---- event ids, idempotency ------------------------------------------------------------------


def test_an_event_id_is_applied_once(store):
    session = store.create_session()
    first = store.add_query(session.id, QueryRecord(query_type="price"), event_id="evt-1")
    again = store.add_query(session.id, QueryRecord(query_type="price"), event_id="evt-1")
    message = store.add_message(session.id, role="user", content="hi", event_id="evt-2")
    repeat = store.add_message(session.id, role="user", content="hi", event_id="evt-2")
    assert (first, again, message, repeat) == (0, None, 1, None)
    final = store.get_session(session.id)
    assert final.query_count == 1 and final.message_count == 1 and final.event_count == 2


def test_idempotency_keys_are_scoped_and_bound_to_the_body(store):
    a = store.create_session(user_id="u", idempotency_key="k1", idempotency_scope="api-key-1")
    again = store.create_session(user_id="u", idempotency_key="k1", idempotency_scope="api-key-1")
    other_scope = store.create_session(
        user_id="u", idempotency_key="k1", idempotency_scope="api-key-2"
    )
    assert again.id == a.id and other_scope.id != a.id
    with pytest.raises(IdempotencyKeyReused) as excinfo:
        store.create_session(user_id="v", idempotency_key="k1", idempotency_scope="api-key-1")
    assert excinfo.value.field == "idempotency_key"
    assert store.delete_session(a.id)
    fresh = store.create_session(user_id="v", idempotency_key="k1", idempotency_scope="api-key-1")
    assert fresh.id != a.id


# ---- seed semantics --------------------------------------------------------------------------


def test_get_recent_queries_returns_the_last_n_queries_for_any_n(store):
    session = store.create_session()
    for i in range(30):
        store.add_query(session.id, QueryRecord(query_type="price", parameters={"i": i}))
        store.add_message(session.id, role="assistant", content=f"answer {i}")
    history = store.get_session(session.id).state.history
    assert [q.parameters["i"] for q in history.get_recent_queries(5)] == list(range(25, 30))
    assert [q.parameters["i"] for q in history.get_recent_queries(28)] == list(range(2, 30))
    assert [q.parameters["i"] for q in store.get_recent_queries(session.id, 100)] == list(range(30))


def test_aiecs_counters(store):
    store.create_session(session_id="user-123", user_id="user-456", metadata={"source": "web"})
    store.update_session("user-123", increment_requests=True, add_processing_time=1.5)
    store.update_session(
        session_id="user-123", increment_requests=True, add_processing_time=0.1, mark_error=True
    )
    session = store.get_session("user-123")
    assert (session.request_count, session.error_count) == (2, 1)
    assert session.total_processing_time == pytest.approx(1.6)
    assert session.status == "active" and not session.is_expired(max_idle_seconds=1800)
    assert session.is_expired(max_idle_seconds=0)


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "1e30", "-1"])
def test_crafted_cursors_are_invalid_input(store, score):
    cursor = base64.urlsafe_b64encode(f"{score}|abc".encode()).decode()
    with pytest.raises(InvalidInput) as excinfo:
        store.list_user_sessions("u", cursor=cursor)
    assert excinfo.value.field == "cursor"


def test_end_after_expiry_is_not_active_except_as_expired(store):
    session = store.create_session(ttl_hours=0.3 / 3600)
    time.sleep(0.4)
    with pytest.raises(SessionNotActive) as excinfo:
        store.end_session(session.id, archive=False)
    assert excinfo.value.status == "expired"
    assert store.end_session(session.id, "expired", archive=False).status == "expired"


def test_ttl_and_extension_have_a_floor(store, settings):
    settings.SESSION_MIN_TTL_SECONDS = 60
    with pytest.raises(InvalidTTL) as excinfo:
        store.create_session(ttl_hours=0.01)
    assert excinfo.value.field == "ttl_hours"
    session = store.create_session(ttl_hours=1)
    with pytest.raises(InvalidTTL):
        store.extend_session(session.id, hours=0.001)


def test_list_sessions_filters_live_and_archived_by_status_and_tags(store):
    a = store.create_session(user_id="lister", tags=["bug-fix", "urgent"])
    b = store.create_session(user_id="lister", tags=["bug-fix"])
    c = store.create_session(user_id="lister", tags=["urgent"])
    store.complete_session(b.id)  # archived
    assert {s.id for s in store.list_sessions(user_id="lister")} == {a.id, b.id, c.id}
    assert {s.id for s in store.list_sessions(tags=["bug-fix"])} == {a.id, b.id}
    urgent_bugs = store.list_sessions(tags=["bug-fix", "urgent"], status=SessionStatus.ACTIVE)
    assert [s.id for s in urgent_bugs] == [a.id]
    assert [s.id for s in store.list_sessions(user_id="lister", status="completed")] == [b.id]
    assert len(store.list_sessions(user_id="lister", limit=2)) == 2


def test_to_dict_and_from_dict_round_trip(store):
    session = store.create_session(assets=["AAPL"], session_type="equity", tags=["t"])
    store.add_query(session.id, QueryRecord(query_type="price"))
    store.update_context(session.id, "k", {"v": 1})
    loaded = store.get_session(session.id)
    data = loaded.to_dict()
    assert data["id"] == session.id and data["type"] == "equity"
    copy = Session.from_dict(data)
    assert copy.id == loaded.id and copy.state.context == {"k": {"v": 1}}
    assert copy.created_at == loaded.created_at and copy.tags == ["t"]


@pytest.mark.django_db(transaction=True)
def test_async_store_reads_archived_sessions_and_policies_natively(store):
    store.create_session(session_id="archived-1", user_id="asyncer")
    store.end_session("archived-1")
    clear_policy_cache()

    async def scenario():
        session_store = await aio.get_session_store()
        await session_store.initialize()
        archived = await session_store.get_session("archived-1")
        live = await session_store.create_session(user_id="asyncer", ttl_hours=2)
        summaries = await session_store.list_user_sessions("asyncer", include_archived=True)
        await session_store.close()
        await close_async_db()
        return archived, live, summaries

    archived, live, summaries = asyncio.run(scenario())
    assert archived.status == "completed" and not archived.is_live
    assert [s.id for s in summaries] == [live.id, "archived-1"]
    assert summaries.next_cursor is None


# ---- policy: SESSION_* defaults and caps -------------------------------------------------------


def test_blank_global_fields_follow_the_session_settings(settings):
    from sessions_app.models import RetentionPolicy
    from sessions_app.policies import get_effective_policy

    RetentionPolicy.objects.update_or_create(
        session_type="", defaults=dict.fromkeys(RetentionPolicy.POLICY_FIELDS)
    )
    settings.SESSION_DEFAULT_TTL_HOURS = 6
    clear_policy_cache()
    policy = get_effective_policy("equity")
    assert policy.default_ttl_hours == 6
    assert dict(policy.sources)["default_ttl_hours"] == "SESSION_DEFAULT_TTL_HOURS"
    RetentionPolicy.objects.create(session_type="equity", default_ttl_hours=2)
    policy = get_effective_policy("equity")
    assert policy.default_ttl_hours == 2 and dict(policy.sources)["default_ttl_hours"] == "type"


def test_policy_caps_are_typed_errors_and_change_nothing(store):
    from sessions_app.exceptions import EventLimitExceeded, SessionLimitExceeded, StateTooLarge
    from sessions_app.models import RetentionPolicy

    RetentionPolicy.objects.create(
        session_type="agent",
        max_events_per_session=2,
        max_state_bytes=40,
        max_live_sessions_per_user=2,
    )
    first = store.create_session(user_id="capped")
    store.create_session(user_id="capped")
    with pytest.raises(SessionLimitExceeded) as excinfo:
        store.create_session(user_id="capped")
    assert excinfo.value.scope == "user" and excinfo.value.limit == 2
    store.add_message(first.id, role="user", content="one")
    store.add_message(first.id, role="user", content="two")
    with pytest.raises(EventLimitExceeded):
        store.add_message(first.id, role="user", content="three")
    store.update_context(first.id, "a", "x" * 20)
    with pytest.raises(StateTooLarge):
        store.store_intermediate_result(first.id, "b", "y" * 30)
    store.update_context(first.id, "a", "x" * 30)  # replacing a value counts the new size only
    final = store.get_session(first.id)
    assert final.event_count == 2 and final.state.intermediate_results == {}


# ---- Redis errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ConnectionError("refused"),
        redis.exceptions.TimeoutError("timed out"),
        redis.exceptions.BusyLoadingError("LOADING Redis is loading the dataset in memory"),
        redis.exceptions.ReadOnlyError("READONLY You can't write against a read only replica."),
        redis.exceptions.ResponseError("NOREPLICAS Not enough good replicas to write."),
    ],
)
def test_redis_outages_are_store_unavailable(error):
    assert isinstance(unavailable(error), StoreUnavailable)


def test_a_script_bug_is_not_an_outage():
    assert unavailable(redis.exceptions.ResponseError("ERR user_script:1: bad")) is None


def test_async_store_with_redis_down_is_store_unavailable():
    async def scenario():
        session_store = AsyncSessionStore(url="redis://127.0.0.1:1/0")
        try:
            await session_store.get_session("anything")
        finally:
            await session_store.close()

    with pytest.raises(StoreUnavailable):
        asyncio.run(scenario())


@pytest.mark.parametrize(
    ("sort", "value"),
    [("-duration", "NaN"), ("-duration", "Infinity"), ("-queries", "1" + "0" * 30)],
)
def test_crafted_history_cursors_are_invalid_input(sort, value):
    from sessions_app import history

    raw = f'["{sort}","n",{value},"abc"]'
    cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    with pytest.raises(InvalidInput) as excinfo:
        history.decode_cursor(cursor, sort)
    assert excinfo.value.field == "cursor"
    # A cursor this code made still decodes.
    good = history.encode_cursor(sort, "n", 5, "abc")
    assert history.decode_cursor(good, sort) == ("n", 5, "abc")
