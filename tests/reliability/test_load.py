"""Load through the REST API of a real server (gunicorn + uvicorn workers, as in the Procfile):
concurrent clients create sessions and track events for a bounded time, then the archive runs.
No errors the client did not cause; every acknowledged event in Postgres exactly once."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections import Counter

import pytest

from sessions_app.archive.timeline import EVENT_ROWS

from .conftest import PYTHON, free_port, wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

THREADS = 8
LOAD_SECONDS = 8.0
EVENTS_PER_SESSION = 15


class Client(threading.Thread):
    """One API client on a keep-alive connection: sessions with queries, messages and tool
    calls until the deadline; every 201 is an acknowledgement it keeps."""

    def __init__(self, n: int, port: int, key: str, deadline: float):
        super().__init__(name=f"client-{n}", daemon=True)
        self.n, self.port, self.deadline = n, port, deadline
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.acked: dict[str, list[int]] = {}
        self.requests = 0
        self.errors: list[str] = []  # failures the client did not cause
        self.rejected = 0  # 4xx the client asked for (deliberately bad requests)

    def call(self, conn, method: str, path: str, body=None, headers=None):
        self.requests += 1
        conn.request(
            method,
            f"/api/v1{path}",
            body=json.dumps(body),
            headers={**self.headers, **(headers or {})},
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            # One deliberately bad request: rejected with the field named, and not an error.
            status, body = self.call(conn, "POST", "/sessions", {"session_type": "stocks"})
            if status == 422 and body["error"]["field"] == "session_type":
                self.rejected += 1
            else:
                self.errors.append(f"bad request answered {status}: {body}")
            while time.monotonic() < self.deadline:
                status, body = self.call(
                    conn,
                    "POST",
                    "/sessions",
                    {"session_type": "equity", "user_id": f"load-{self.n}", "assets": ["SPY"]},
                    {"Idempotency-Key": uuid.uuid4().hex},
                )
                if status != 201:
                    self.errors.append(f"create answered {status}: {body}")
                    continue
                session_id = body["id"]
                seqs = self.acked.setdefault(session_id, [])
                for i in range(EVENTS_PER_SESSION):
                    if time.monotonic() >= self.deadline:
                        break
                    if i % 3 == 0:
                        path, payload = "/queries", {"query_type": "price", "parameters": {"i": i}}
                    elif i % 3 == 1:
                        path, payload = "/messages", {"role": "user", "content": f"q{i}"}
                    else:
                        path, payload = "/tool-calls", {"tool_name": "quote", "tokens_in": 5}
                    status, body = self.call(conn, "POST", f"/sessions/{session_id}{path}", payload)
                    if status == 201:
                        seqs.append(body["seq"])
                    else:
                        self.errors.append(f"{path} answered {status}: {body}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()


def test_concurrent_api_clients_lose_nothing_and_archive_exactly_once(
    own_redis, own_postgres, redis_prefix, make_procs, capsys
):
    procs = make_procs(own_postgres.url, own_redis.url, redis_prefix, WEB_CONCURRENCY="2")
    key = procs.script("create_key", "read", "write")["key"]
    port = free_port()
    procs.start(
        "web",
        [PYTHON, "-m", "gunicorn", "fimlsessions.asgi:application",
         "--worker-class", "uvicorn_worker.UvicornWorker", "--workers", "2",
         "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5"],
    )  # fmt: skip

    def up():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/openapi.json")
            return conn.getresponse().status == 200
        except OSError:
            return False

    wait_for(up, 60, "the web server", interval=0.2)

    deadline = time.monotonic() + LOAD_SECONDS
    started = time.monotonic()
    clients = [Client(n, port, key, deadline) for n in range(THREADS)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(LOAD_SECONDS + 60)
    elapsed = time.monotonic() - started
    assert not any(client.is_alive() for client in clients)
    errors = [error for client in clients for error in client.errors]
    assert errors == [], errors[:5]
    assert sum(client.rejected for client in clients) == THREADS

    acked = {sid: seqs for client in clients for sid, seqs in client.acked.items()}
    requests = sum(client.requests for client in clients)
    events = sum(len(seqs) for seqs in acked.values())
    assert events > 0
    for seqs in acked.values():
        assert seqs == list(range(len(seqs)))  # one writer per session: seqs in order

    # Archive everything (a cleanup run two days later), then compare with Postgres.
    result = procs.script("archive", 1000, 48 * 3600)
    assert result["outcome"] == "success", result
    assert result["counts"]["archived"] == len(acked)
    rows = own_postgres.query(
        f"SELECT session_id::text, seq FROM {EVENT_ROWS} ev ORDER BY session_id, seq"
    )
    stored = Counter((row[0], row[1]) for row in rows)
    assert all(n == 1 for n in stored.values())  # exactly once
    assert set(stored) == {(sid, seq) for sid, seqs in acked.items() for seq in seqs}
    assert own_postgres.scalar("SELECT count(*) FROM sessions_app_session") == len(acked)
    with capsys.disabled():
        print(
            f"\n[load] {THREADS} clients, {elapsed:.1f} s: {requests} requests "
            f"({requests / elapsed:.0f}/s), {len(acked)} sessions and {events} events "
            f"acknowledged ({events / elapsed:.0f} events/s), 0 errors; archived "
            f"{result['counts']['archived']} sessions, every event once"
        )
