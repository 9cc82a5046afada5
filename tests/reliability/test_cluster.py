"""A real 3-master Redis Cluster (redis-server --cluster-enabled yes x3, joined by
`redis-cli --cluster create`) on loopback ports, as a fixture.

With REDIS_CLUSTER=true and REDIS_URL naming any one node, the process's client reaches the
whole cluster, and the parts of the app outside the store that keep state in Redis (job locks
and parked runs, the policy version, the API-key cache, the rate limits, health heartbeats)
work on it: each of them uses single-key operations only.

The store on a cluster (its hash-tagged, per-shard layout): test_store_cluster.py.
"""

from __future__ import annotations

import time

import pytest

from sessions_app import apikeys, health, jobs, policies, ratelimit, worker
from sessions_app.models import JobRun
from sessions_app.redis_client import get_redis

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture
def on_cluster(redis_cluster, settings):
    """Point this process's Redis client at the cluster (through its last node)."""
    saved = settings.REDIS_URL
    settings.REDIS_CLUSTER = True
    settings.REDIS_URL = f"redis://127.0.0.1:{redis_cluster.servers[-1].port}/0"
    get_redis.cache_clear()
    try:
        yield redis_cluster
    finally:
        # Back to the normal Redis before anything (the key cleanup) builds a client again.
        settings.REDIS_CLUSTER = False
        settings.REDIS_URL = saved
        get_redis.cache_clear()


def test_any_node_reaches_the_whole_cluster(on_cluster, redis_prefix):
    from redis.cluster import RedisCluster

    client = get_redis()
    assert isinstance(client, RedisCluster)
    names = [f"{redis_prefix}:probe:{n}" for n in range(60)]
    for name in names:
        client.set(name, 1)
    # The keys spread over the three masters, each holding some.
    per_node = [s.client().dbsize() for s in on_cluster.servers]
    assert all(count > 0 for count in per_node), per_node
    print(f"\n[cluster] 60 keys over 3 masters: {per_node}")
    client.delete(*names)


def test_jobs_policies_keys_limits_and_health_work_on_the_cluster(on_cluster, settings):
    run = jobs.run_job("cluster-demo", lambda: {"ok": 1})
    assert run.outcome == JobRun.Outcome.SUCCESS
    assert jobs.acquire_lock("cluster-demo") and jobs.acquire_lock("cluster-demo") is None
    policies._bump_version()
    assert policies._redis_version() not in (None, "0")
    key, raw = apikeys.create_api_key("cluster", ["read"])
    assert apikeys.authenticate(raw).pk == key.pk
    apikeys.revoke(key)
    assert apikeys._remembered(apikeys.hash_key(raw)) is None
    settings.API_KEY_RATE_LIMIT = (2, 300)
    for _ in range(2):
        assert ratelimit.authenticate_api_key("fs_000000000000_" + "G" * 43, "10.1.1.1") is None
    with pytest.raises(ratelimit.RateLimited):
        ratelimit.authenticate_api_key("fs_000000000000_" + "G" * 43, "10.1.1.1")
    worker.heartbeat("worker@cluster")
    health._cached = None
    assert health.system_health()["checks"]["worker"]["ok"] is True
    assert time.time() > 0


def test_store_lifecycle_on_the_cluster(on_cluster):
    from sessions_app.store import get_session_store

    store = get_session_store()
    session = store.create_session(assets=["SPY"], user_id="cluster")
    store.end_session(session.id, "completed", archive=False)
    assert store.get_session(session.id).status == "completed"
