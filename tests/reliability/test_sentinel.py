"""Sentinel: a real group (1 primary, 1 replica, 3 sentinels) on loopback ports. The store's
client and Celery's broker follow the sentinels; the primary is killed mid-load: every write
acknowledged after the replica wait (WAIT 1) is on the new primary afterwards, and every other
write either succeeded or failed with a Redis connection error (the store's 503)."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from sessions_app.redis_client import ReplicaWaitFailed, execute_durably, get_redis
from sessions_app.store import get_session_store
from tests.redis_topologies import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_settings_point_store_and_broker_at_the_sentinels(monkeypatch):
    import subprocess
    import sys

    env_code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.CELERY_BROKER_URL, s.CELERY_BROKER_TRANSPORT_OPTIONS]))"
    )
    import os

    env = {**os.environ, "REDIS_SENTINELS": "127.0.0.1:26379,10.0.0.2:26380"}
    env["REDIS_SENTINEL_MASTER"] = "prod"
    env.pop("CELERY_BROKER_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", env_code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        '["sentinel://127.0.0.1:26379;sentinel://10.0.0.2:26380", {"master_name": "prod"}]'
    )


def test_broker_connects_through_the_sentinels(sentinel_group):
    from kombu import Connection

    url = ";".join(f"sentinel://127.0.0.1:{s.port}" for s in sentinel_group.sentinels)
    options = {"master_name": sentinel_group.master_name}
    with Connection(url, transport_options=options) as conn:
        queue = conn.SimpleQueue("fs-sentinel-test")
        queue.put({"hello": 1})
        assert queue.get(timeout=5).payload == {"hello": 1}
        queue.close()


def test_failover_keeps_every_write_acknowledged_with_the_replica_wait(
    sentinel_group, settings, redis_prefix
):
    settings.REDIS_WAIT_REPLICAS = 1
    settings.REDIS_WAIT_TIMEOUT_MS = 300
    store = get_session_store()
    before = store.create_session(assets=["SPY"], session_type="equity", user_id="failover")
    acked: list[str] = []
    failed: list[tuple[str, Exception]] = []
    stop = threading.Event()

    def load():
        client = get_redis()
        n = 0
        while not stop.is_set():
            name = f"{redis_prefix}:w:{n}"
            n += 1
            try:
                pipe = client.pipeline(transaction=False)
                pipe.set(name, n)
                execute_durably(pipe)
                acked.append(name)
            except redis.exceptions.ConnectionError as exc:  # incl. timeouts' ConnectionError
                failed.append((name, exc))
                time.sleep(0.05)
            except redis.exceptions.RedisError as exc:
                failed.append((name, exc))
                time.sleep(0.05)

    writer = threading.Thread(target=load)
    writer.start()
    try:
        wait_until(lambda: len(acked) >= 50, 10, "writes before the failover")
        old_primary = sentinel_group.primary
        old_primary.kill()
        old_port = old_primary.port
        wait_until(lambda: sentinel_group.current_primary_port() != old_port, 30, "a new primary")
        promoted = sentinel_group.current_primary_port()
        # The old primary comes back as a replica of the new one: the replica wait works again.
        old_primary.restart()
        after_failover = len(acked)
        wait_until(lambda: len(acked) >= after_failover + 50, 30, "acknowledged writes again")
    finally:
        stop.set()
        writer.join(30)
    assert promoted != old_port
    # Sentinel may fail over again later (back to the restarted node, on a loaded machine): the
    # client follows whichever node is the primary now.
    new_primary = sentinel_group.current_primary_port()
    client = get_redis()  # the sentinel-following client, on the current primary
    assert client.connection_pool.get_master_address()[1] == new_primary
    missing = [name for name in acked if client.get(name) is None]
    assert missing == [], f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
    # Failures are Redis connection errors (the store answers 503), incl. too few replicas.
    kinds = {type(exc).__name__ for _, exc in failed}
    assert all(isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.ReadOnlyError)
               for _, exc in failed), kinds  # fmt: skip
    print(
        f"\n[sentinel failover] {len(acked)} writes acknowledged with WAIT 1, none lost; "
        f"{len(failed)} refused during the failover ({', '.join(sorted(kinds))})"
    )
    # The store follows the new primary too.
    assert store.get_session(before.id).id == before.id
    assert store.create_session(assets=["SPY"], session_type="equity", user_id="after")
    assert ReplicaWaitFailed.__mro__[1] is redis.exceptions.ConnectionError
