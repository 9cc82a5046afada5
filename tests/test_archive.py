"""The archiver against real Redis and Postgres: nothing lost, crash-safe, idle, retention."""

import time
import uuid
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from sessions_app import archive
from sessions_app.models import RetentionPolicy, Session
from sessions_app.policies import clear_policy_cache
from sessions_app.redis_client import get_redis
from sessions_app.store import QueryRecord
from sessions_app.store import keys as skeys
from tests.factories import archived_sessions, event_rows

pytestmark = pytest.mark.django_db

HOUR = 3600


@pytest.fixture(autouse=True)
def fresh_policies():
    # Policy rows of an earlier test may still sit in the 5 s process cache.
    clear_policy_cache()
    yield
    clear_policy_cache()


def live_keys(prefix):
    """The live store's keys (sessions and indexes: every one carries a shard tag)."""
    return sorted(get_redis().scan_iter(match=f"{prefix}:{{*}}:*"))


def session_data(prefix):
    """Every session key's content (indexes left out)."""
    client = get_redis()
    data = {}
    for name in client.scan_iter(match=f"{prefix}:*:s:*"):
        kind = client.type(name)
        if kind == "set":  # applied event ids
            data[name] = client.smembers(name)
        else:
            data[name] = client.hgetall(name) if kind == "hash" else client.lrange(name, 0, -1)
    return data


def index_sizes():
    client = get_redis()
    return {
        "due": sum(client.zcard(skeys.due(shard)) for shard in skeys.shards()),
        "activity": sum(client.zcard(skeys.activity(shard)) for shard in skeys.shards()),
    }


def busy_session(store, n_queries=3, **kwargs):
    """A live session with queries, a message, a tool call, context and a result."""
    kwargs.setdefault("assets", ["AAPL", "MSFT"])
    kwargs.setdefault("session_type", "equity")  # the store defaults to agent
    kwargs.setdefault("user_id", "user_1")
    session = store.create_session(**kwargs)
    for i in range(n_queries):
        store.add_query(
            session.id,
            QueryRecord(
                query_type="price",
                parameters={"symbol": "AAPL", "i": i},
                result_summary=f"AAPL: ${175 + i}",
                execution_time_ms=10.0 + i,
                cache_hit=i % 2 == 0,
            ),
        )
    store.add_message(session.id, role="user", content="Compare <b>AAPL</b> and MSFT\ttoday\n")
    store.record_tool_call(
        session.id,
        tool_name="git_tool",
        invocation_id="inv_1",
        duration_ms=150.5,
        tokens_in=120,
        tokens_out=40,
        cost=0.0012,
    )
    store.update_context(session.id, "allocation", {"SPY": 0.6, "QQQ": 0.3, "IWM": 0.1})
    store.store_intermediate_result(session.id, "analysis_1", {"data": "value", "n": [1, 2]})
    return store.get_session(session.id)


def test_nothing_is_lost_at_expiry(store, redis_prefix):
    sessions = [
        busy_session(store, n_queries=i, ttl_hours=0.01, session_type=kind)
        for i, kind in enumerate(["equity", "crypto", "portfolio", "comparative", "macro"])
    ]
    quiet = store.create_session(assets=["BTC"], session_type="crypto", ttl_hours=0.01)
    # Never touched again: an hour later they are all past their TTL.
    counts = archive.archive_due_sessions(now=time.time() + HOUR)

    assert counts["archived"] == counts["expired"] == 6
    assert counts["missing"] == counts["failed"] == 0
    assert live_keys(redis_prefix) == []
    rows = {row.id: row for row in Session.objects.all()}
    assert set(rows) == {s.id for s in [*sessions, quiet]}
    for live in sessions:
        row = rows[live.id]
        assert row.status == "expired" and row.archived_at is not None
        assert row.user_id == "user_1" and row.assets == ["AAPL", "MSFT"]
        assert row.query_count == live.query_count and row.cache_hits == live.cache_hits
        assert row.message_count == 1 and row.tool_call_count == 1
        assert row.tokens_in == 120 and row.tokens_out == 40
        assert row.cost == Decimal("0.001200")
        assert row.context == {"allocation": {"SPY": 0.6, "QQQ": 0.3, "IWM": 0.1}}
        assert row.intermediate_results == {"analysis_1": {"data": "value", "n": [1, 2]}}
        assert row.created_at == live.created_at
        assert row.duration_seconds == pytest.approx(
            (live.last_activity_at - live.created_at).total_seconds(), abs=1e-3
        )
        events = event_rows(live.id)
        assert [e.seq for e in events] == list(range(live.query_count + 2))
        queries = [e for e in events if e.kind == "query"]
        assert [q.parameters["i"] for q in queries] == list(range(live.query_count))
        assert [q.cache_hit for q in queries] == [i % 2 == 0 for i in range(live.query_count)]
        message = next(e for e in events if e.kind == "message")
        assert message.role == "user"
        assert message.content == "Compare <b>AAPL</b> and MSFT\ttoday"  # stripped on input
        tool = next(e for e in events if e.kind == "tool_call")
        assert (tool.tool_name, tool.invocation_id, tool.duration_ms) == (
            "git_tool",
            "inv_1",
            150.5,
        )
        assert tool.cost == Decimal("0.001200")
    assert rows[quiet.id].query_count == 0
    # Archived sessions read back through the store, from Postgres.
    again = store.get_session(sessions[3].id)
    assert not again.is_live and again.state.history.total_queries == 3


def test_sessions_not_yet_due_stay_live(store, redis_prefix):
    soon = store.create_session(assets=["AAPL"], ttl_hours=0.01)
    later = store.create_session(assets=["AAPL"], ttl_hours=5)
    counts = archive.archive_due_sessions(now=time.time() + 60)
    assert counts["archived"] == 1
    assert Session.objects.get().id == soon.id
    assert store.get_session(later.id).is_live
    assert index_sizes() == {"due": 1, "activity": 1}


def test_ended_sessions_keep_their_status(store):
    done = busy_session(store)
    failed = busy_session(store)
    store.end_session(done.id, "completed", archive=False)
    store.end_session(failed.id, "failed", archive=False)
    counts = archive.archive_due_sessions()
    assert counts["archived"] == counts["ended"] == 2
    statuses = dict(Session.objects.values_list("id", "status"))
    assert statuses == {done.id: "completed", failed.id: "failed"}
    row = Session.objects.get(id=done.id)
    assert row.ended_at is not None
    assert row.duration_seconds == pytest.approx(
        (row.ended_at - row.created_at).total_seconds(), abs=1e-3
    )


def test_end_session_archives_right_away(store, redis_prefix):
    session = busy_session(store)
    ended = store.end_session(session.id, "completed")
    assert not ended.is_live and ended.status == "completed"
    assert len(event_rows(session.id)) == session.event_count
    assert live_keys(redis_prefix) == []


def test_idle_sessions_become_abandoned_per_type_timeout(store):
    RetentionPolicy.objects.create(session_type="crypto", idle_timeout_minutes=10)
    crypto = busy_session(store, session_type="crypto", assets=["BTC"])
    equity = busy_session(store, session_type="equity")  # global idle timeout: 120 min
    counts = archive.archive_due_sessions(now=time.time() + 11 * 60)
    assert counts == {
        "archived": 1,
        "expired": 0,
        "abandoned": 1,
        "ended": 0,
        "missing": 0,
        "failed": 0,
        "deleted": 0,
        "batches": 1,
    }
    row = Session.objects.get()
    assert row.id == crypto.id and row.status == "abandoned"
    assert row.ended_at == crypto.last_activity_at
    assert store.get_session(equity.id).is_live
    # Two hours on, the equity session is idle past the global timeout too.
    counts = archive.archive_due_sessions(now=time.time() + 121 * 60)
    assert counts["abandoned"] == 1
    assert Session.objects.get(id=equity.id).status == "abandoned"


def test_writes_after_the_archiver_froze_a_session_are_rejected(store):
    from sessions_app.exceptions import SessionNotActive

    RetentionPolicy.objects.create(session_type="equity", idle_timeout_minutes=5)
    session = busy_session(store)
    # Claim without finishing (as if the run were still writing to Postgres).
    shard = skeys.shard_of(str(session.id))
    archive._claim(get_redis(), shard, time.time() + 6 * 60, 10, 0)
    with pytest.raises(SessionNotActive):
        store.add_query(session.id, QueryRecord(query_type="price"))
    assert store.get_session(session.id).query_count == session.query_count


def test_crash_between_commit_and_redis_delete_then_rerun(
    store, redis_prefix, monkeypatch, settings
):
    settings.REDIS_SHARDS = 1  # one batch holds them all (a run goes shard by shard)
    sessions = [busy_session(store, ttl_hours=0.01) for _ in range(4)]
    store.end_session(sessions[0].id, "completed", archive=False)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("worker killed after the commit")

    monkeypatch.setattr(archive, "_forget", crash)
    with pytest.raises(KeyboardInterrupt):
        archive.archive_due_sessions(now=time.time() + HOUR, batch_size=10)
    # Committed to Postgres, still in Redis: the state a crash leaves.
    assert Session.objects.count() == 4
    assert all(store.redis.exists(skeys.meta(str(s.id))) for s in sessions)
    first_archived_at = dict(Session.objects.values_list("id", "archived_at"))
    monkeypatch.undo()

    # Within the claim lease the sessions belong to the crashed run; after it they are due.
    assert archive.archive_due_sessions(now=time.time() + HOUR + 1)["archived"] == 0
    later = time.time() + HOUR + archive.CLAIM_LEASE_SECONDS + 5
    counts = archive.archive_due_sessions(now=later)
    assert counts["archived"] == 4 and counts["ended"] == 1 and counts["expired"] == 3
    assert Session.objects.count() == 4
    expected_events = sum(s.event_count for s in sessions)
    assert len(event_rows()) == expected_events
    assert dict(Session.objects.values_list("id", "archived_at")) == first_archived_at
    assert live_keys(redis_prefix) == []


def test_crash_recovery_through_internal_steps(store, redis_prefix):
    """Write step done, delete step never run: a re-run upserts again without duplicates."""
    sessions = [busy_session(store, ttl_hours=0.01) for _ in range(3)]
    client = get_redis()
    now = time.time() + HOUR
    claimed = [
        pair for shard in skeys.shards() for pair in archive._claim(client, shard, now, 100, 0)[2]
    ]
    snapshots = archive._snapshot(client, [session_id for session_id, _ in claimed])
    archive._write(snapshots, timezone.now())  # committed; crash here
    counts = archive.archive_due_sessions(now=now + archive.CLAIM_LEASE_SECONDS + 1)
    assert counts["archived"] == 3
    assert Session.objects.count() == 3
    assert len(event_rows()) == sum(s.event_count for s in sessions)
    assert live_keys(redis_prefix) == []


def test_batches_and_counts(store, redis_prefix):
    made = [
        store.create_session(assets=["AAPL"], ttl_hours=0.01, user_id="batcher") for _ in range(5)
    ]
    per_shard = Counter(skeys.shard_of(str(s.id)) for s in made)
    counts = archive.archive_due_sessions(now=time.time() + HOUR, batch_size=2)
    # Batches of 2 within each shard: 3 with one shard.
    assert counts["archived"] == 5
    assert counts["batches"] == sum((n + 1) // 2 for n in per_shard.values())
    assert live_keys(redis_prefix) == []


def test_index_entries_without_keys_are_removed_as_missing(store):
    client = get_redis()
    ghost = str(uuid.uuid4())
    shard = skeys.shard_of(ghost)
    client.zadd(skeys.due(shard), {ghost: time.time() - 10})
    client.zadd(skeys.activity(shard), {ghost: time.time() - 10})
    client.zadd(skeys.session_type(shard, "equity"), {ghost: time.time() - 10})
    idle_ghost = str(uuid.uuid4())
    client.zadd(skeys.activity(skeys.shard_of(idle_ghost)), {idle_ghost: time.time() - 10 * HOUR})
    live = store.create_session(assets=["AAPL"], session_type="equity")
    counts = archive.archive_due_sessions()
    assert counts["missing"] == 2 and counts["archived"] == 0
    everywhere = {
        name: [m for s in skeys.shards() for m in client.zrange(index(s), 0, -1)]
        for name, index in (
            ("due", skeys.due),
            ("activity", skeys.activity),
            ("equity", lambda s: skeys.session_type(s, "equity")),
        )
    }
    assert everywhere == {
        "due": [str(live.id)],
        "activity": [str(live.id)],
        "equity": [str(live.id)],
    }
    assert Session.objects.count() == 0


def test_archive_session_now(store, redis_prefix):
    session = busy_session(store)
    assert archive.archive_session(session.id) is True
    row = Session.objects.get()
    assert row.status == "expired" and row.query_count == 3
    assert archive.archive_session(session.id) is False  # no longer live
    assert archive.archive_session(uuid.uuid4()) is False
    assert live_keys(redis_prefix) == []


def test_one_bad_session_does_not_block_the_batch(store, redis_prefix):
    good = busy_session(store, ttl_hours=0.01)
    bad = busy_session(store, ttl_hours=0.01)
    # A NUL escape is valid JSON but Postgres jsonb refuses it. The store refuses it on input
    # now; data already in Redis (an older writer) must still not block the batch.
    get_redis().hset(skeys.session_keys(str(bad.id))[2], "note", '"before\\u0000after"')
    counts = archive.archive_due_sessions(now=time.time() + HOUR)
    assert counts["archived"] == 2 and counts["failed"] == 0
    assert Session.objects.get(id=good.id).context["allocation"]["SPY"] == 0.6
    assert Session.objects.get(id=bad.id).context["note"] == "before\ufffdafter"
    assert live_keys(redis_prefix) == []


@pytest.mark.django_db(transaction=True)
def test_postgres_down_leaves_redis_untouched_and_a_later_run_retries(
    store, redis_prefix, settings
):
    settings.REDIS_SHARDS = 1  # one batch holds them all (a run goes shard by shard)
    sessions = [busy_session(store, ttl_hours=0.01) for _ in range(2)]
    before = session_data(redis_prefix)
    connection.close()
    real_port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = 1  # nothing listens there: Postgres is "down"
    try:
        with pytest.raises(DatabaseError):
            archive.archive_due_sessions(now=time.time() + HOUR)
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real_port
    # Every key and value is still there; the sessions were only made non-active first.
    # Their archive time was stamped (once) by the snapshot: a retry writes the same day.
    after = session_data(redis_prefix)
    expected = dict(before)
    for s in sessions:
        stamp = after[skeys.meta(str(s.id))]["archived_at"]
        assert abs(float(stamp) - time.time()) < 60
        expected[skeys.meta(str(s.id))] = before[skeys.meta(str(s.id))] | {
            "status": "expired",
            "archived_at": stamp,
        }
    assert after == expected
    assert Session.objects.count() == 0
    # Made due again at once, no lease to wait out.
    counts = archive.archive_due_sessions(now=time.time() + HOUR)
    assert counts["archived"] == 2
    assert len(event_rows()) == sum(s.event_count for s in sessions)
    assert live_keys(redis_prefix) == []


def test_delete_archived_sessions_by_id():
    keep, *doomed = archived_sessions([{"queries": [{}, {}]} for _ in range(4)])
    assert archive.delete_archived_sessions([s.id for s in doomed], batch_size=2) == 3
    assert list(Session.objects.values_list("id", flat=True)) == [keep.id]
    assert len(event_rows()) == 2


def test_retention_deletes_exactly_the_sessions_past_their_types_retention():
    RetentionPolicy.objects.filter(session_type="").update(retention_days=30)
    RetentionPolicy.objects.create(session_type="crypto", retention_days=7)
    now = timezone.now()

    def spec(session_type, days_ago):
        when = now - timedelta(days=days_ago)
        return {
            "session_type": session_type,
            "archived_at": when,
            "created_at": when - timedelta(hours=1),
            "queries": [{}, {}],
            "messages": [("user", "hi")],
        }

    plan = [
        ("equity", 31, True),
        ("equity", 29, False),
        ("equity", 45, True),
        ("crypto", 8, True),
        ("crypto", 6, False),
        ("crypto", 29, True),
        ("macro", 10, False),
        ("macro", 300, True),
    ] * 3
    sessions = archived_sessions([spec(kind, days) for kind, days, _ in plan])
    doomed = {s.id for s, (_, _, gone) in zip(sessions, plan, strict=True) if gone}
    kept = {s.id for s in sessions} - doomed

    counts = archive.delete_old_archived_sessions(now=now, batch_size=4)
    assert counts["sessions"] == len(doomed) == 15
    # Older than the longest retention (30 days): their whole days are dropped. The 6 crypto
    # sessions past their 7 days go by the bounded delete.
    assert counts["dropped_sessions"] == 9
    assert counts["events"] == 3 * 6
    assert counts["batches"] >= 2
    assert set(Session.objects.values_list("id", flat=True)) == kept
    assert {row.session_id for row in event_rows()} == kept
    # Nothing left to do: a second run deletes nothing.
    assert archive.delete_old_archived_sessions(now=now)["sessions"] == 0


def test_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        archive.archive_due_sessions(batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        archive.delete_old_archived_sessions(batch_size=0)


def _archive_now(session_id) -> dict:
    assert archive.archive_session(session_id)
    return Session.objects.get(pk=session_id).query_type_counts


def test_query_type_counts_come_from_the_live_stores_counters(store):
    session = busy_session(store, n_queries=3)
    store.add_query(session.id, QueryRecord(query_type="News", parameters={}))
    store.add_query(session.id, QueryRecord(query_type="news.v2", parameters={}))
    # Per-type counters in the meta hash, one per query event, beside query_count.
    meta = get_redis().hgetall(skeys.meta(str(session.id)))
    assert {k: v for k, v in meta.items() if k.startswith("qt:")} == {
        "qt:price": "3",
        "qt:news": "1",
        "qt:news.v2": "1",
    }
    assert _archive_now(session.id) == {"price": 3, "news": 1, "news.v2": 1}
    quiet = store.create_session(session_type="agent", user_id="u-quiet")
    store.add_message(quiet.id, role="user", content="no queries")
    assert _archive_now(quiet.id) == {}


def test_sessions_without_counters_are_counted_from_their_events(store):
    # A session written before the per-type counters existed (or by anything that did not keep
    # them): its counts come from its query events, `other` for a blank type, as before.
    session = busy_session(store, n_queries=4)
    store.add_query(session.id, QueryRecord(query_type="news", parameters={}))
    client = get_redis()
    meta_key = skeys.meta(str(session.id))
    client.hdel(meta_key, *[k for k in client.hgetall(meta_key) if k.startswith("qt:")])
    events_key = skeys.session_keys(str(session.id))[1]
    blank = client.lindex(events_key, 0).replace('"query_type":"price"', '"query_type":""')
    client.lset(events_key, 0, blank)
    assert _archive_now(session.id) == {"price": 3, "news": 1, "other": 1}


def test_partial_counters_fall_back_to_the_events(store):
    # Counters that do not add up to the query count (a session that got them mid-life).
    session = busy_session(store, n_queries=2)
    store.add_query(session.id, QueryRecord(query_type="news", parameters={}))
    get_redis().hdel(skeys.meta(str(session.id)), "qt:news")
    assert _archive_now(session.id) == {"price": 2, "news": 1}


def test_query_type_counts_match_the_events_after_a_batch(store, redis_prefix):
    made = []
    for i in range(30):
        session = store.create_session(session_type="agent", user_id=f"u{i % 3}", ttl_hours=0.01)
        for j in range(i % 5):
            store.add_query(session.id, QueryRecord(query_type=f"t{(i + j) % 3}", parameters={}))
        made.append(session.id)
    counts = archive.archive_due_sessions(now=time.time() + HOUR, batch_size=7)
    assert counts["archived"] == 30
    by_events = {str(sid): Counter() for sid in made}
    for row in event_rows():
        if row.kind == "query":
            by_events[str(row.session_id)][row.query_type] += 1
    stored = dict(Session.objects.values_list("id", "query_type_counts"))
    assert {sid: dict(c) for sid, c in by_events.items()} == stored
