"""The live store against real Redis (Postgres for archived reads): atomicity, limits, errors."""

import socket
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from sessions_app.archive import timeline
from sessions_app.exceptions import (
    InvalidInput,
    InvalidPayload,
    InvalidSessionType,
    InvalidStatus,
    InvalidTTL,
    QueryLimitExceeded,
    SessionNotActive,
    SessionNotFound,
    StoreUnavailable,
)
from sessions_app.models import RetentionPolicy, Session
from sessions_app.policies import clear_policy_cache
from sessions_app.redis_client import get_redis, make_redis_client
from sessions_app.store import QueryRecord, SessionStore, SessionType
from sessions_app.store import keys as skeys

pytestmark = pytest.mark.django_db


def _prefix_keys(prefix):
    return sorted(get_redis().scan_iter(match=f"{prefix}:*"))


def test_create_returns_live_session_with_defaults(store, settings):
    session = store.create_session(
        assets=["aapl", "GOOGL", "AAPL"], session_type=SessionType.EQUITY, user_id="user_123"
    )
    assert session.is_live and session.status == "active"
    assert session.assets == ["AAPL", "GOOGL"]  # upper-cased, duplicates dropped
    ttl = (session.expires_at - session.created_at).total_seconds()
    assert ttl == pytest.approx(settings.SESSION_DEFAULT_TTL_HOURS * 3600, abs=1)
    fetched = store.get_session(session.id)
    assert fetched.id == session.id and fetched.user_id == "user_123"
    assert fetched.expires_at == session.expires_at


def test_redis_safety_net_expiry_is_well_past_session_expiry(store, settings):
    session = store.create_session(assets=["BTC"], session_type="crypto", ttl_hours=1)
    store.add_query(session.id, QueryRecord(query_type="price"))
    client = get_redis()
    grace = settings.SESSION_REDIS_GRACE_HOURS * 3600
    for suffix in ("", ":ev"):
        ttl = client.ttl(skeys.meta(str(session.id)) + suffix)
        assert 3600 + grace - 5 <= ttl <= 3600 + grace


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"session_type": "bonds"}, InvalidSessionType, "session_type"),
        ({"ttl_hours": 0}, InvalidTTL, "ttl_hours"),
        ({"ttl_hours": 10_000}, InvalidTTL, "ttl_hours"),
        ({"ttl_hours": "24"}, InvalidTTL, "ttl_hours"),
        ({"assets": "AAPL"}, InvalidInput, "assets"),
        ({"assets": ["AAPL", "bad symbol!"]}, InvalidInput, "assets"),
        ({"tags": ["x" * 65]}, InvalidInput, "tags"),
        ({"purpose": "p" * 2001}, InvalidInput, "purpose"),
        ({"ip": "999.1.1.1"}, InvalidInput, "ip"),
        ({"metadata": {"x": float("nan")}}, InvalidPayload, "metadata"),
        ({"preferences": ["not", "a", "dict"]}, InvalidPayload, "preferences"),
    ],
)
def test_bad_create_input_names_the_field_and_writes_nothing(
    store, redis_prefix, kwargs, error, field
):
    args = {"assets": ["AAPL"], "session_type": "equity", **kwargs}
    with pytest.raises(error) as excinfo:
        store.create_session(**args)
    assert excinfo.value.field == field
    assert isinstance(excinfo.value, ValueError)
    assert _prefix_keys(redis_prefix) == []


def test_seed_track_query_and_context_workflow(store):
    session = store.create_session(
        assets=["AAPL", "GOOGL"], session_type="equity", user_id="user_123", tags=["etf"]
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
    store.add_query(session.id, QueryRecord(query_type="fundamentals", execution_time_ms=30.0))
    store.add_message(session.id, role="user", content="How does AAPL compare?")
    store.record_tool_call(
        session.id,
        tool_name="git_tool",
        invocation_id="inv_1",
        duration_ms=150.5,
        tokens_in=120,
        tokens_out=40,
        cost=0.0012,
    )
    store.update_context(session.id, "user_preference", "detailed")
    store.update_context(session.id, "allocation", {"SPY": 0.6, "QQQ": 0.3})
    store.update_context(session.id, "allocation", {"SPY": 0.5, "QQQ": 0.5})
    store.store_intermediate_result(session.id, "analysis_1", {"data": "value"})

    s = store.get_session(session.id)
    assert s.state.history.total_queries == 2
    assert s.state.history.cache_hit_rate == 0.5
    recent = s.state.history.get_recent_queries(5)
    assert [q.query_type for q in recent] == ["price", "fundamentals"]
    assert recent[0].parameters == {"symbol": "AAPL"} and recent[0].cache_hit is True
    assert s.state.context == {
        "user_preference": "detailed",
        "allocation": {"SPY": 0.5, "QQQ": 0.5},
    }
    assert s.state.intermediate_results == {"analysis_1": {"data": "value"}}
    assert (s.message_count, s.tool_call_count, s.event_count) == (1, 1, 4)
    assert (s.tokens_in, s.tokens_out) == (120, 40)
    assert float(s.cost) == pytest.approx(0.0012)
    assert s.total_execution_ms == pytest.approx(42.5)
    assert s.last_activity_at >= s.created_at


def test_fifty_concurrent_writers_leave_fifty_events(store):
    session = store.create_session(assets=["SPY"], session_type="portfolio", user_id="u")
    barrier = threading.Barrier(50)
    errors = []

    def writer(n):
        try:
            barrier.wait()
            store.add_query(
                session.id,
                QueryRecord(query_type="price", execution_time_ms=1.0, cache_hit=n % 2 == 0),
            )
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    s = store.get_session(session.id)
    events, total = store.get_timeline(session.id, 0, 100)
    assert total == 50 and len(events) == 50
    assert sorted(event.seq for event in events) == list(range(50))
    assert s.query_count == 50 and s.cache_hits == 25
    assert s.total_execution_ms == pytest.approx(50.0)


def test_query_limit_rejects_and_leaves_session_unchanged(store):
    RetentionPolicy.objects.create(session_type="macro", max_queries_per_session=3)
    clear_policy_cache()
    session = store.create_session(assets=["CPIAUCSL"], session_type="macro")
    for _ in range(3):
        store.add_query(session.id, QueryRecord(query_type="macro"))
    with pytest.raises(QueryLimitExceeded) as excinfo:
        store.add_query(session.id, QueryRecord(query_type="macro"))
    assert excinfo.value.limit == 3
    s = store.get_session(session.id)
    assert s.query_count == 3 and s.event_count == 3
    # The limit counts queries only: messages still go through.
    store.add_message(session.id, role="assistant", content="done")


def test_unknown_session_raises_not_found_for_every_write(store):
    missing = uuid.uuid4()
    assert store.get_session(missing) is None
    calls = [
        lambda: store.add_query(missing, QueryRecord(query_type="price")),
        lambda: store.add_message(missing, role="user", content="hi"),
        lambda: store.record_tool_call(missing, tool_name="t"),
        lambda: store.update_context(missing, "k", 1),
        lambda: store.store_intermediate_result(missing, "k", 1),
        lambda: store.extend_session(missing, hours=1),
        lambda: store.end_session(missing),
        lambda: store.get_timeline(missing),
    ]
    for call in calls:
        with pytest.raises(SessionNotFound):
            call()
    with pytest.raises(InvalidInput) as excinfo:
        store.get_session("not a session id!")
    assert excinfo.value.field == "session_id"


@pytest.mark.parametrize("bad", ["", ".", "..", "a b", "a/b", "x" * 129, "é", 42, None])
def test_session_ids_outside_the_rule_are_invalid_input(store, bad):
    with pytest.raises(InvalidInput) as excinfo:
        store.get_session(bad)
    assert excinfo.value.field == "session_id"


def test_bad_event_payloads_are_rejected_without_writing(store):
    session = store.create_session(assets=["ETH"], session_type="crypto")
    bad = [
        (lambda: store.add_query(session.id, QueryRecord(query_type="")), "query_type"),
        (lambda: store.add_query(session.id, QueryRecord(query_type="9x")), "query_type"),
        (
            lambda: store.add_query(
                session.id, QueryRecord(query_type="price", execution_time_ms=-1)
            ),
            "execution_time_ms",
        ),
        (
            lambda: store.add_query(
                session.id, QueryRecord(query_type="price", parameters={"x": "y" * 40_000})
            ),
            "parameters",
        ),
        (lambda: store.add_message(session.id, role="robot", content="x"), "role"),
        (lambda: store.add_message(session.id, role="user", content=""), "content"),
        (lambda: store.record_tool_call(session.id, tool_name="t", tokens_in=-5), "tokens_in"),
        (lambda: store.record_tool_call(session.id, tool_name="t", cost=float("inf")), "cost"),
        (lambda: store.update_context(session.id, "", 1), "key"),
        (lambda: store.update_context(session.id, "k", {1, 2}), "value"),
    ]
    for call, field in bad:
        with pytest.raises(InvalidInput) as excinfo:
            call()
        assert excinfo.value.field == field
    assert store.get_session(session.id).event_count == 0
    assert store.get_session(session.id).state.context == {}


def test_writes_after_end_are_rejected(store):
    session = store.create_session(assets=["AAPL"], session_type="equity")
    with pytest.raises(InvalidStatus):
        store.end_session(session.id, status="paused")
    store.end_session(session.id, status="failed", archive=False)
    with pytest.raises(SessionNotActive) as excinfo:
        store.add_query(session.id, QueryRecord(query_type="price"))
    assert excinfo.value.status == "failed"
    with pytest.raises(SessionNotActive):
        store.update_context(session.id, "k", 1)
    with pytest.raises(SessionNotActive):
        store.end_session(session.id)
    ended = store.get_session(session.id)
    assert ended.status == "failed" and ended.ended_at is not None
    # An ended session waits in the due index for the archiver, and leaves the live list.
    assert get_redis().zscore(skeys.due(skeys.shard_of(str(session.id))), str(session.id)) == 0
    assert session.id not in [s.id for s in store.list_live_sessions()]


def test_writes_after_expiry_are_rejected(store):
    session = store.create_session(assets=["AAPL"], session_type="equity", ttl_hours=0.5 / 3600)
    time.sleep(0.6)
    with pytest.raises(SessionNotActive) as excinfo:
        store.add_message(session.id, role="user", content="late")
    assert excinfo.value.status == "expired"
    assert store.get_session(session.id) is not None  # still readable until archived


def test_extend_is_capped_by_max_ttl(store):
    session = store.create_session(assets=["AAPL"], session_type="equity", ttl_hours=24)
    new_expiry = store.extend_session(session.id, hours=24)
    assert new_expiry - session.expires_at == pytest.approx(
        timedelta(hours=24), abs=timedelta(seconds=1)
    )
    assert get_redis().zscore(
        skeys.due(skeys.shard_of(str(session.id))), str(session.id)
    ) == pytest.approx(new_expiry.timestamp(), abs=0.01)
    with pytest.raises(InvalidTTL) as excinfo:
        store.extend_session(session.id, hours=200)
    assert excinfo.value.field == "hours" and "168" in excinfo.value.reason
    assert store.get_session(session.id).expires_at == new_expiry


def test_list_user_sessions_pages_with_cursor_newest_first(store):
    ids = [store.create_session(assets=["X"], session_type="crypto", user_id="pager").id]
    ids += [store.create_session(assets=["X"], session_type="crypto", user_id="pager").id]
    ids += [
        store.create_session(assets=["X"], session_type="equity", user_id="pager").id
        for _ in range(23)
    ]
    store.create_session(assets=["X"], session_type="equity", user_id="someone-else")
    seen, cursor = [], None
    while True:
        page = store.list_user_sessions("pager", limit=7, cursor=cursor)
        seen += [item.id for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    with pytest.raises(InvalidInput) as excinfo:
        store.list_user_sessions("pager", cursor="garbage")
    assert excinfo.value.field == "cursor"
    with pytest.raises(InvalidInput):
        store.list_user_sessions("pager", limit=0)


def test_list_user_sessions_merges_archived(store):
    now = timezone.now()
    old = [
        Session.objects.create(
            user_id="merge",
            session_type="equity",
            status="completed",
            assets=["AAPL"],
            created_at=now - timedelta(days=day),
            last_activity_at=now - timedelta(days=day),
            expires_at=now - timedelta(days=day) + timedelta(hours=24),
            ended_at=now - timedelta(days=day),
            archived_at=now - timedelta(days=day),
        ).id
        for day in (1, 2, 3)
    ]
    live = store.create_session(assets=["X"], session_type="crypto", user_id="merge").id
    only_live = store.list_user_sessions("merge")
    assert [item.id for item in only_live.items] == [live]
    first = store.list_user_sessions("merge", include_archived=True, limit=2)
    assert [item.id for item in first.items] == [live, old[0]]
    assert [item.is_live for item in first.items] == [True, False]
    second = store.list_user_sessions(
        "merge", include_archived=True, limit=2, cursor=first.next_cursor
    )
    assert [item.id for item in second.items] == old[1:]
    assert second.next_cursor is None


def test_get_reads_archived_session_from_postgres(store):
    now = timezone.now()
    row = Session.objects.create(
        user_id="arch",
        session_type="agent",
        status="completed",
        created_at=now - timedelta(hours=2),
        last_activity_at=now - timedelta(hours=1),
        expires_at=now + timedelta(hours=20),
        ended_at=now - timedelta(hours=1),
        archived_at=now,
        context={"k": [1, 2]},
        message_count=3,
    )
    events = [
        {"seq": seq, "kind": "message", "occurred_at": now, "role": "user", "content": f"m{seq}"}
        for seq in range(3)
    ]
    with connection.cursor() as cursor:
        timeline.write(cursor, {row.id: [timeline.event_json(event) for event in events]})
    s = store.get_session(row.id, recent_events=2)
    assert not s.is_live and s.status == "completed"
    assert [event.content for event in s.recent_events] == ["m1", "m2"]
    assert s.state.context == {"k": [1, 2]}
    events, total = store.get_timeline(row.id, offset=1, limit=5)
    assert total == 3 and [event.seq for event in events] == [1, 2]


def test_idempotency_key_returns_the_same_session(store):
    first = store.create_session(assets=["AAPL"], session_type="equity", idempotency_key="req-1")
    again = store.create_session(assets=["AAPL"], session_type="equity", idempotency_key="req-1")
    other = store.create_session(assets=["AAPL"], session_type="equity", idempotency_key="req-2")
    assert first.id == again.id != other.id
    assert store.live_counts()["by_type"]["equity"] == 2


def test_delete_removes_live_session_and_indexes(store, redis_prefix):
    session = store.create_session(assets=["AAPL"], session_type="equity", user_id="del")
    store.add_query(session.id, QueryRecord(query_type="price"))
    store.update_context(session.id, "k", 1)
    assert store.delete_session(session.id) is True
    assert store.get_session(session.id) is None
    remaining = _prefix_keys(redis_prefix)
    assert all(str(session.id) not in k for k in remaining)
    assert (
        get_redis().zscore(skeys.user(skeys.shard_of(str(session.id)), "del"), str(session.id))
        is None
    )
    assert store.delete_session(session.id) is False


def test_live_counts_and_list_by_activity(store):
    a = store.create_session(assets=["A"], session_type="equity")
    b = store.create_session(assets=["B"], session_type="crypto")
    store.add_message(a.id, role="user", content="newest activity")
    assert [s.id for s in store.list_live_sessions()] == [a.id, b.id]
    counts = store.live_counts()
    assert counts["total"] == 2
    assert counts["by_type"]["equity"] == 1 and counts["by_type"]["crypto"] == 1


def test_redis_down_raises_store_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    dead = SessionStore(client=make_redis_client(f"redis://127.0.0.1:{port}/0", timeout=0.5))
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        dead.create_session(assets=["AAPL"], session_type="equity")
    with pytest.raises(StoreUnavailable):
        dead.add_query(uuid.uuid4(), QueryRecord(query_type="price"))
    assert time.monotonic() - started < 5  # fails fast rather than hanging


def test_writes_to_archived_session_are_not_active_not_unknown(store):
    now = timezone.now()
    row = Session.objects.create(
        session_type="equity",
        status="expired",
        created_at=now,
        last_activity_at=now,
        expires_at=now,
        archived_at=now,
    )
    with pytest.raises(SessionNotActive) as excinfo:
        store.add_query(row.id, QueryRecord(query_type="price"))
    assert excinfo.value.status == "expired"
    with pytest.raises(SessionNotActive):
        store.extend_session(row.id, hours=1)


def test_values_postgres_cannot_store_or_redis_cannot_count_are_rejected(store):
    session = store.create_session(assets=["AAPL"], session_type="equity")
    with pytest.raises(InvalidPayload) as excinfo:
        store.update_context(session.id, "k", {"text": "nul\x00inside"})
    assert excinfo.value.field == "value" and "NUL" in excinfo.value.reason
    store.update_context(session.id, "k", {"text": "a literal \\u0000 is fine"})
    with pytest.raises(InvalidInput) as excinfo:
        store.add_query(session.id, QueryRecord(query_type="price", execution_time_ms=1e300))
    assert excinfo.value.field == "execution_time_ms"
    with pytest.raises(InvalidInput) as excinfo:
        store.record_tool_call(session.id, tool_name="t", cost=1e20)
    assert excinfo.value.field == "cost"
    assert store.get_session(session.id).event_count == 0


def test_a_write_no_replica_confirmed_is_store_unavailable(store, settings):
    """REDIS_WAIT_REPLICAS: a write is acknowledged only once that many replicas have it; this
    Redis has none, so the caller gets StoreUnavailable (503), never a success."""
    session = store.create_session(assets=["SPY"])
    settings.REDIS_WAIT_REPLICAS, settings.REDIS_WAIT_TIMEOUT_MS = 1, 20
    with pytest.raises(StoreUnavailable, match="replica"):
        store.add_query(session.id, QueryRecord(query_type="price"))
    with pytest.raises(StoreUnavailable, match="replica"):
        store.create_session(assets=["SPY"])
    assert store.get_session(session.id).status == "active"  # reads do not wait
    settings.REDIS_WAIT_REPLICAS = 0
    assert store.add_query(session.id, QueryRecord(query_type="price")) is not None


@pytest.mark.django_db(transaction=True)
def test_the_async_store_waits_for_replicas_too(settings):
    from asgiref.sync import async_to_sync

    from sessions_app.store.aio import AsyncSessionStore

    settings.REDIS_WAIT_REPLICAS, settings.REDIS_WAIT_TIMEOUT_MS = 1, 20

    async def create():
        store = AsyncSessionStore()
        try:
            await store.create_session(assets=["SPY"])
        finally:
            await store.close()

    with pytest.raises(StoreUnavailable, match="replica"):
        async_to_sync(create)()
