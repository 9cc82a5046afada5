"""REST and MCP in degraded modes and at the transport edge (issue 11, items 17 and 20):
archived sessions stay readable while Redis is down, MCP errors do not leak Redis's address,
GET /mcp opens no never-ending SSE stream, and /mcp follows the HTTPS policy."""

import asyncio
import json
import socket

import httpx
import pytest
from django.test import Client

from sessions_app import apikeys
from sessions_app.mcp import McpHttpApp, call_tool
from sessions_app.redis_client import get_redis


@pytest.fixture(autouse=True)
def short_lived_connections(settings):
    """MCP tools run on a worker thread: its connection must close after each call, so none
    outlives the test database."""
    db = settings.DATABASES["default"]
    max_age, db["CONN_MAX_AGE"] = db["CONN_MAX_AGE"], 0
    yield
    db["CONN_MAX_AGE"] = max_age


@pytest.fixture
def redis_down(settings):
    """Point the app at a loopback port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    original = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    get_redis.cache_clear()
    yield port
    settings.REDIS_URL = original
    get_redis.cache_clear()


@pytest.fixture
def archived(transactional_db, store):
    session = store.create_session(session_type="equity", user_id="u-down", assets=["AAPL"])
    store.add_message(session.id, role="user", content="hello")
    store.end_session(session.id)  # archived right away
    return str(session.id)


@pytest.fixture
def reader(transactional_db):
    _, secret = apikeys.create_api_key("reader", ["read", "write"])
    return {"Authorization": f"Bearer {secret}"}


def test_archived_session_is_readable_over_rest_and_mcp_while_redis_is_down(
    archived, reader, redis_down
):
    response = Client().get(f"/api/v1/sessions/{archived}", headers=reader)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["is_live"], body["message_count"]) == (archived, False, 1)
    result = asyncio.run(call_tool("get-session-info", {"sessionId": archived}))
    assert not result.is_error, result.content[0].text
    assert result.structured_content["id"] == archived
    # Unknown ids may be live: only Redis can tell, so that stays a 503.
    assert Client().get("/api/v1/sessions/not-archived", headers=reader).status_code == 503


def test_archived_timeline_is_readable_over_rest_while_redis_is_down(archived, reader, redis_down):
    response = Client().get(f"/api/v1/sessions/{archived}/timeline", headers=reader)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["total"] == 1
    assert [(item["kind"], item["content"]) for item in body["items"]] == [("message", "hello")]
    # Not archived: it may be live, and only Redis can tell.
    missing = Client().get("/api/v1/sessions/not-archived/timeline", headers=reader)
    assert missing.status_code == 503


def test_mcp_errors_do_not_leak_redis_address(transactional_db, redis_down):
    result = asyncio.run(call_tool("create-analysis-session", {"sessionType": "equity"}))
    assert result.is_error
    text = result.content[0].text + json.dumps(result.structured_content)
    assert result.structured_content["error"]["code"] == "store_unavailable"
    assert str(redis_down) not in text
    assert "Error 111" not in text and "127.0.0.1" not in text


def _mcp(method: str, headers=None, scheme: str = "http"):
    async def go():
        transport = httpx.ASGITransport(app=McpHttpApp())
        async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://localhost") as c:
            return await c.request(method, "/mcp", headers=headers or {}, json={})

    return asyncio.run(go())


def test_get_mcp_is_405_not_an_endless_stream(transactional_db):
    response = _mcp("GET", {"Accept": "text/event-stream"})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, DELETE"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_mcp_follows_the_https_policy(transactional_db, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    response = _mcp("POST")
    assert response.status_code == 308
    assert response.headers["location"] == "https://localhost/mcp"
    # Over HTTPS it goes on to the key check.
    assert _mcp("POST", scheme="https").status_code == 401
    # Behind a configured proxy, its X-Forwarded-Proto is believed; without one it is not.
    forwarded = {"X-Forwarded-Proto": "https"}
    assert _mcp("POST", forwarded).status_code == 308
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert _mcp("POST", forwarded).status_code == 401
