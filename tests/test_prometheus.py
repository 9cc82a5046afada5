"""/metrics: access control, metric names, the store hook, and multiprocess summing through a
real gunicorn with two workers."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings

from sessions_app import prometheus
from sessions_app.alerts.models import AlertRule
from sessions_app.exceptions import SessionNotFound
from sessions_app.models import JobRun

ROOT = Path(__file__).resolve().parent.parent


def sample(text: str, name: str, **labels) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(found.get(key) == str(value) for key, value in labels.items()):
            total += float(match.group(2))
    return total


@pytest.mark.django_db
def test_metrics_need_an_allowed_address_or_the_token(client, settings):
    settings.METRICS_TOKEN = "scrape-token"
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1", "10.1.0.0/16"]
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 403
    assert (
        client.get(
            "/metrics", REMOTE_ADDR="192.0.2.7", HTTP_AUTHORIZATION="Bearer scrape-token"
        ).status_code
        == 200
    )
    assert (
        client.get(
            "/metrics", REMOTE_ADDR="192.0.2.7", HTTP_AUTHORIZATION="Bearer nope"
        ).status_code
        == 403
    )


@pytest.mark.django_db
def test_metrics_cover_requests_jobs_live_sessions_and_alerts(client, store, analyst_client):
    before = client.get("/metrics").content.decode()
    store.create_session(assets=["BTC"], session_type="crypto", user_id="m1")
    store.create_session(assets=["BTC"], session_type="crypto", user_id="m2")
    AlertRule.objects.create(
        name="crypto live", metric="live_sessions", threshold=1, state="firing"
    )
    JobRun.objects.create(
        job="generate_session_metrics",
        started_at="2026-01-01T00:00Z",
        outcome="success",
        duration_ms=1500,
    )
    JobRun.objects.create(
        job="cleanup_expired_sessions",
        started_at="2026-01-01T00:00Z",
        outcome="success",
        duration_ms=10,
        counts={"archived": 7, "failed": 1},
    )
    analyst_client.get("/operations/")
    text = client.get("/metrics").content.decode()
    assert sample(text, "fiml_live_sessions", session_type="crypto") == 2
    assert sample(text, "fiml_alert_firing", rule="crypto live") == 1
    assert sample(text, "fiml_alert_rules", state="firing") == 1
    assert "fiml_archive_backlog " in text

    def delta(name, **labels):
        return sample(text, name, **labels) - sample(before, name, **labels)

    assert delta("fiml_job_runs_total", job="generate_session_metrics", outcome="success") == 1
    assert (
        delta("fiml_job_run_seconds_count", job="generate_session_metrics", outcome="success") == 1
    )
    assert delta("fiml_archive_sessions_total", outcome="archived") == 7
    assert delta("fiml_archive_sessions_total", outcome="failed") == 1
    assert (
        delta("fiml_http_requests_total", interface="dashboard", route="operations/", status="200")
        == 1
    )


def test_store_hook_counts_operations_by_outcome():
    def get_session(session_id):
        if session_id == "missing":
            raise SessionNotFound(session_id)
        return {"id": session_id}

    wrapped = prometheus.instrument_store_op(get_session)
    ok = prometheus.STORE_OPS.labels("get_session", "ok")._value.get()
    missing = prometheus.STORE_OPS.labels("get_session", "not_found")._value.get()
    assert wrapped("a") == {"id": "a"}
    with pytest.raises(SessionNotFound):
        wrapped("missing")
    assert prometheus.STORE_OPS.labels("get_session", "ok")._value.get() == ok + 1
    assert prometheus.STORE_OPS.labels("get_session", "not_found")._value.get() == missing + 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str = "") -> tuple[int, str]:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_gunicorn_with_two_workers_sums_counters(tmp_path):
    """Requests spread over two gunicorn workers; every scrape shows the sum of both."""
    port = _free_port()
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": settings.DATABASE_URL,
        "REDIS_URL": settings.REDIS_URL,
        "SESSION_REDIS_PREFIX": f"testprom{uuid.uuid4().hex[:8]}",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_TOKEN": "tok",
        "DJANGO_SETTINGS_MODULE": "fimlsessions.settings",
    }
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "fimlsessions.asgi:application",
            "--worker-class",
            "uvicorn_worker.UvicornWorker",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--no-control-socket",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(f"{base}/accounts/login/")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()[-2000:]
            time.sleep(0.3)
        # Requests in concurrent batches until both workers have served some (the kernel gives
        # connections to whichever worker accepts first, so one batch may all go to one).
        requests = 0
        pids: set[str] = set()
        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(pids) < 2 and requests < 2000:
                batch = list(pool.map(lambda _: _get(f"{base}/accounts/login/")[0], range(40)))
                assert batch == [200] * 40
                requests += 40
                pids = {path.name for path in metrics_dir.glob("counter_*.db")}
        assert len(pids) >= 2, f"one worker served everything: {pids}"
        for _ in range(4):  # whichever worker answers the scrape, the sum is the same
            status, text = _get(f"{base}/metrics", token="tok")
            assert status == 200
            served = sample(
                text,
                "fiml_http_requests_total",
                interface="dashboard",
                route="accounts/login/",
                method="GET",
                status="200",
            )
            assert served == requests + 1  # and the readiness probe's first success
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


def test_mcp_requests_are_counted_by_status():
    import asyncio

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 406, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message):
        pass

    counter = prometheus.HTTP_REQUESTS.labels("mcp", "/mcp", "GET", "406")
    before = counter._value.get()
    scope = {"type": "http", "path": "/mcp/", "method": "GET"}
    asyncio.run(prometheus.observe_asgi(app, scope, None, send))
    assert counter._value.get() == before + 1


def _ops(op: str, outcome: str) -> float:
    return prometheus.STORE_OPS.labels(op, outcome)._value.get()


@pytest.mark.django_db
def test_both_store_front_ends_count_their_operations(store):
    """The hook wraps the real sync and async stores: calls counted by operation and outcome."""
    import asyncio

    from sessions_app.store.aio import AsyncSessionStore

    created, got, missing = (
        _ops("create_session", "ok"),
        _ops("get_session", "ok"),
        _ops("extend_session", "not_found"),
    )
    session = store.create_session(assets=["AAPL"], session_type="equity", user_id="p1")
    store.get_session(session.id)
    assert _ops("create_session", "ok") == created + 1
    assert _ops("get_session", "ok") == got + 1

    async def go():
        astore = AsyncSessionStore()
        try:
            await astore.get_session(session.id)
            with pytest.raises(SessionNotFound):
                await astore.extend_session("no-such-session", 1)
        finally:
            await astore.close()

    asyncio.run(go())
    assert _ops("get_session", "ok") == got + 2
    assert _ops("extend_session", "not_found") == missing + 1


@pytest.mark.django_db
def test_archive_backlog_and_quarantine_gauges(client, store):
    """Backlog: the store's ZCOUNT of sessions past due; quarantine: QuarantinedSession rows."""
    from django.utils import timezone

    from sessions_app.models import QuarantinedSession

    now = time.time()
    store.create_session(assets=["AAPL"], session_type="equity", user_id="b1", ttl_hours=1)
    store.create_session(assets=["AAPL"], session_type="equity", user_id="b2", ttl_hours=3)
    assert store.archive_backlog(now) == 0
    assert store.archive_backlog(now + 2 * 3600) == 1
    assert store.archive_backlog(now + 4 * 3600) == 2
    store.create_session(assets=["AAPL"], session_type="equity", user_id="b3", ttl_hours=0.0003)
    time.sleep(1.2)  # past its expiry, not archived yet: the backlog
    QuarantinedSession.objects.create(
        session_id="q1", snapshot="{}", error="boom", quarantined_at=timezone.now()
    )
    text = client.get("/metrics").content.decode()
    assert sample(text, "fiml_archive_backlog") == 1
    assert sample(text, "fiml_quarantined_sessions") == 1
