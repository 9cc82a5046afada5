"""/healthz is cheap (heartbeats, no Celery ping) and tells anonymous callers only up/down;
workers archive by themselves when beat has gone silent."""

import json
import time

import pytest
from django.test import Client

from sessions_app import health, worker
from sessions_app.beat import BEAT_HEARTBEAT_KEY
from sessions_app.models import Session
from sessions_app.redis_client import get_redis, key
from sessions_app.store import get_session_store

pytestmark = pytest.mark.django_db


def test_healthz_shows_details_to_staff_only(make_user):
    worker.heartbeat("worker@host-a")
    get_redis().set(key(BEAT_HEARTBEAT_KEY), time.time())
    anonymous = Client().get("/healthz")
    assert anonymous.status_code == 200
    body = json.loads(anonymous.content)
    assert body == {"ok": True, "checks": {p: {"ok": True} for p in body["checks"]}}
    assert "host-a" not in anonymous.content.decode()
    staff = Client()
    staff.force_login(make_user("staff"))
    health._cached = None
    details = json.loads(staff.get("/healthz").content)
    assert details["checks"]["worker"]["workers"] == ["worker@host-a"]


def test_healthz_reads_heartbeats_and_caches_instead_of_pinging(django_assert_max_num_queries):
    worker.heartbeat("worker@host-b")
    started = time.monotonic()
    first = health.system_health()
    assert first["checks"]["worker"]["ok"] is True
    # Stale heartbeats are down, without waiting on any worker.
    get_redis().hset(health.workers_key(), "worker@host-b", time.time() - 3600)
    assert health.system_health() is first  # cached for a moment: a flood costs nothing
    health._cached = None
    assert health.system_health()["checks"]["worker"]["ok"] is False
    assert time.monotonic() - started < 1.0  # the old Celery ping alone waited 1 s
    with django_assert_max_num_queries(0):
        for _ in range(50):
            health.system_health()


@pytest.mark.django_db(transaction=True)
def test_a_worker_archives_when_beat_has_been_silent_longer_than_the_interval():
    store = get_session_store()
    session = store.create_session(assets=["SPY"], user_id="selfcheck")
    store.end_session(session.id, "completed", archive=False)
    now = time.time()
    # Beat ticked a moment ago: nothing to do.
    get_redis().set(key(BEAT_HEARTBEAT_KEY), now)
    assert worker.self_check(worker_started=now - 10 * 3600) is None
    # Beat silent for longer than the cleanup interval (60 min by default): archive now.
    get_redis().set(key(BEAT_HEARTBEAT_KEY), now - 2 * 3600)
    result = worker.self_check(worker_started=now - 10 * 3600)
    assert result["outcome"] == "success" and result["counts"]["archived"] == 1
    assert Session.objects.filter(id=session.id).exists()
    # One worker per interval: the next one to notice leaves it alone.
    assert worker.self_check(worker_started=now - 10 * 3600) is None
