"""The live store on a real 3-master Redis Cluster, its sessions over 12 shards (REDIS_SHARDS).

Each session's keys and the index entries its scripts touch share the shard's hash tag, so
every script call maps to one slot; lists, counts and the archiver ask every shard and merge.
The whole store test module runs on a cluster too: `FS_TEST_REDIS_CLUSTER=1 pytest
tests/test_store.py tests/test_seed_api.py` (tests/conftest.py starts one for the run).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from sessions_app import archive, jobs
from sessions_app.models import JobRun, Session
from sessions_app.redis_client import _store_client, get_redis
from sessions_app.store import QueryRecord, get_session_store
from sessions_app.store import keys as skeys
from tests.factories import event_rows

pytestmark = [pytest.mark.slow]

SHARDS = 12
HOUR = 3600


@pytest.fixture
def on_cluster(redis_cluster, settings):
    """This process's clients (the store's too) on the cluster, sessions over SHARDS shards."""
    saved = settings.REDIS_URL, settings.REDIS_CLUSTER, settings.REDIS_SHARDS
    settings.REDIS_CLUSTER, settings.REDIS_URL = True, redis_cluster.url
    settings.REDIS_SHARDS = SHARDS
    get_redis.cache_clear()
    _store_client.cache_clear()
    try:
        yield redis_cluster
    finally:
        # Back to the normal Redis before anything (the key cleanup) builds a client again.
        settings.REDIS_URL, settings.REDIS_CLUSTER, settings.REDIS_SHARDS = saved
        get_redis.cache_clear()
        _store_client.cache_clear()


def master_port(session_id: str) -> int:
    """The port of the master holding this session's keys."""
    return get_redis().get_node_from_key(skeys.meta(session_id)).port


def store_keys_left(cluster, prefix: str) -> list[str]:
    return [
        name
        for server in cluster.masters()
        for name in server.client().scan_iter(match=f"{prefix}:{{*}}:*", count=1000)
    ]


@pytest.mark.django_db(transaction=True)
def test_lifecycle_create_write_end_expire_archive(on_cluster, redis_prefix):
    store = get_session_store()
    ended = store.create_session(assets=["SPY"], user_id="ana", session_type="equity")
    expiring = store.create_session(assets=["BTC"], user_id="ana", session_type="crypto")
    other = store.create_session(assets=["ETH"], user_id="bo", session_type="crypto")
    assert len({skeys.shard_of(str(s.id)) for s in (ended, expiring, other)}) > 1
    for session in (ended, expiring):
        store.add_query(session.id, QueryRecord(query_type="price", execution_time_ms=5))
        store.update_context(session.id, "focus", {"ticker": session.assets[0]})
        store.add_message(session.id, role="user", content="hello")
    assert store.add_query(expiring.id, QueryRecord(query_type="q"), event_id="e1") == 2
    assert store.add_query(expiring.id, QueryRecord(query_type="q"), event_id="e1") is None
    assert store.get_timeline(expiring.id, 0, 10)[1] == 3
    assert store.extend_session(other.id, 1)
    # Global reads: every shard asked, merged.
    counts = store.live_counts()
    assert counts["total"] == 3 and counts["by_type"]["crypto"] == 2
    assert {s.id for s in store.list_live_sessions(limit=10)} == {
        str(ended.id),
        str(expiring.id),
        str(other.id),
    }
    page = store.list_user_sessions("ana", limit=1)
    rest = store.list_user_sessions("ana", limit=1, cursor=page.next_cursor)
    assert [page[0].id, rest[0].id] == [str(expiring.id), str(ended.id)]
    assert rest.next_cursor is None
    assert store.live_flags([str(ended.id), "nope"]) == {str(ended.id): True, "nope": False}

    store.end_session(ended.id, "completed")  # archived at once
    assert Session.objects.get(id=ended.id).status == "completed"
    counts = archive.archive_due_sessions(now=time.time() + 30 * 24 * HOUR)
    assert counts["archived"] == 2 and counts["expired"] == 2
    assert Session.objects.count() == 3
    assert len(event_rows(expiring.id)) == 3
    assert store.get_session(expiring.id).status == "expired"
    assert store.live_counts()["total"] == 0
    assert store_keys_left(on_cluster, redis_prefix) == []


@pytest.mark.django_db(transaction=True)
def test_idempotent_creates_and_deletes_across_shards(on_cluster):
    store = get_session_store()
    first = store.create_session(assets=["SPY"], idempotency_key="k1")
    assert store.create_session(assets=["SPY"], idempotency_key="k1").id == first.id
    # A caller-chosen id in another shard than its key: the two-step create.
    chosen = next(f"c{n}" for n in range(100) if skeys.shard_of(f"c{n}") != 0)
    key = next(
        f"k{n}"
        for n in range(100)
        if skeys.idempotency_shard("", f"k{n}") != skeys.shard_of(chosen)
    )
    made = store.create_session(assets=["SPY"], session_id=chosen, idempotency_key=key)
    assert store.create_session(assets=["SPY"], session_id=chosen, idempotency_key=key) == made
    assert store.delete_session(chosen) is True
    assert get_redis().get(skeys.idempotency("", key)) is None  # freed with its session
    assert store.delete_session(first.id) is True


@pytest.mark.django_db(transaction=True)
def test_a_batch_over_sessions_on_every_master_applies_each_event_once(on_cluster):
    from sessions_app.api.ingest import apply_batch

    store = get_session_store()
    # One session in each shard: every master holds some.
    by_shard = {}
    for n in range(1000):
        by_shard.setdefault(skeys.shard_of(f"batch-{n}"), f"batch-{n}")
    sessions = [store.create_session(session_id=sid).id for sid in by_shard.values()]
    assert len(sessions) == SHARDS and len({master_port(sid) for sid in sessions}) == 3
    operations = [
        {
            "op": "message",
            "session_id": sid,
            "event_id": f"m{n}-{i}",
            "role": "user",
            "content": "x",
        }
        for n, sid in enumerate(sessions)
        for i in range(3)
    ]
    operations += [
        {"op": "counters", "session_id": sid, "event_id": f"c{n}", "increment_requests": True}
        for n, sid in enumerate(sessions)
    ]
    assert apply_batch(operations)["accepted"] == len(operations)
    again = apply_batch(operations)  # a retried batch: each event once
    assert again["duplicate"] == len(operations)
    for sid in sessions:
        read = store.get_session(sid)
        assert (read.message_count, read.request_count, read.event_count) == (3, 1, 3)
        assert [event.seq for event in read.recent_events] == [0, 1, 2]


@pytest.mark.django_db(transaction=True)
def test_workload_spreads_over_all_masters_and_three_workers_archive_it(on_cluster, redis_prefix):
    store = get_session_store()
    total = 240
    ids = []
    for n in range(total):
        session = store.create_session(assets=["SPY"], user_id=f"u{n % 7}", ttl_hours=1)
        store.add_query(session.id, QueryRecord(query_type="price"))
        ids.append(str(session.id))
    split = Counter(master_port(i) for i in ids)
    shards = Counter(skeys.shard_of(i) for i in ids)
    print(
        f"\n[cluster] {total} sessions over 3 masters: "
        + ", ".join(f"{port}: {n}" for port, n in sorted(split.items()))
        + f"; over {SHARDS} shards: min {min(shards.values())}, max {max(shards.values())}"
    )
    assert len(split) == 3 and all(n > 0 for n in split.values())
    assert len(shards) == SHARDS
    assert store.live_counts()["total"] == total

    # Three workers at once: each goes over the shards under one lock per shard.
    later = time.time() + 2 * HOUR
    start = threading.Barrier(3)
    results: list[dict] = [{} for _ in range(3)]

    def worker(n: int) -> None:
        from django.db import connection

        try:
            start.wait()
            results[n] = jobs.run_named_job("cleanup", now=later)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    archived = [result["counts"].get("archived", 0) for result in results]
    print(f"[cluster] archived per worker: {archived}")
    assert all(result["outcome"] == JobRun.Outcome.SUCCESS for result in results), results
    assert sum(archived) == total  # each session archived once, by one worker
    assert sum(1 for n in archived if n > 0) >= 2  # in parallel, not one worker doing all
    # Each shard emptied by one run, whichever worker took it (a worker coming to a shard
    # after it was done finds nothing due there).
    runs = JobRun.objects.filter(job=jobs.CLEANUP, outcome=JobRun.Outcome.SUCCESS)
    assert sum(1 for run in runs if run.counts["archived"]) == SHARDS
    assert Session.objects.count() == total
    assert store_keys_left(on_cluster, redis_prefix) == []
