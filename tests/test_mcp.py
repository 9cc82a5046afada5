"""MCP tools through the SDK's own client: over stdio (`manage.py mcp_server` as a subprocess)
and over streamable HTTP (/mcp on a real uvicorn server running fimlsessions.asgi)."""

import json
import os
import socket
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
import uvicorn
from django.conf import settings
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from sessions_app import apikeys
from sessions_app.models import RetentionPolicy
from sessions_app.models import Session as ArchivedSession
from sessions_app.policies import clear_policy_cache
from sessions_app.store import get_session_store

BASE_DIR = Path(__file__).resolve().parent.parent
TOOL_NAMES = {
    "create-analysis-session",
    "get-session-info",
    "list-sessions",
    "extend-session",
    "get-session-analytics",
    "track-query",
    "add-message",
    "end-session",
}

pytestmark = pytest.mark.django_db(transaction=True)  # servers use their own DB connections


# ---- servers and clients --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url():
    """fimlsessions.asgi (Django + /mcp) under uvicorn on a free loopback port."""
    from fimlsessions.asgi import build_application

    # Like CONN_MAX_AGE=0 in production without pooling: the server's threads close their
    # connections after each call, so none outlives the module (the test database can be
    # dropped at the end).
    db = settings.DATABASES["default"]
    max_age, db["CONN_MAX_AGE"] = db["CONN_MAX_AGE"], 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        build_application(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    db["CONN_MAX_AGE"] = max_age


def make_key(*scopes) -> str:
    return apikeys.create_api_key(f"mcp-{'-'.join(scopes)}", list(scopes))[1]


@asynccontextmanager
async def http_session(base_url: str, key: str):
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        streamable_http_client(f"{base_url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def stdio_params() -> StdioServerParameters:
    """`manage.py mcp_server` against this test's database and Redis key prefix."""
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    database_url = f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    return StdioServerParameters(
        command=sys.executable,
        args=["manage.py", "mcp_server"],
        cwd=str(BASE_DIR),
        env={
            "DATABASE_URL": database_url,
            "REDIS_URL": settings.REDIS_URL,
            "SESSION_REDIS_PREFIX": settings.SESSION_REDIS_PREFIX,
            "SECRET_KEY": "test-only",
            "FIML_DATA_DIR": os.environ.get("FIML_DATA_DIR", str(settings.DATA_DIR)),
        },
    )


@asynccontextmanager
async def stdio_session():
    with open(os.devnull, "w") as errlog:
        async with (
            stdio_client(stdio_params(), errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


async def call(session, tool, **arguments):
    """(is_error, structured content, text) of one tool call."""
    result = await session.call_tool(tool, arguments)
    text = result.content[0].text
    return result.is_error, result.structured_content, text


async def ok(session, tool, **arguments) -> dict:
    is_error, data, text = await call(session, tool, **arguments)
    assert not is_error, text
    assert json.loads(text) == data
    return data


# ---- the same tour of every tool over both transports ---------------------------------------


async def tour(session) -> None:
    """Every tool's happy path, and the errors every client meets: bad argument, unknown id,
    writes after end."""
    tools = (await session.list_tools()).tools
    assert {tool.name for tool in tools} == TOOL_NAMES
    create_schema = next(t for t in tools if t.name == "create-analysis-session").input_schema
    assert {"assets", "sessionType", "userId", "ttlHours", "tags"} <= set(
        create_schema["properties"]
    )
    assert create_schema["required"] == ["sessionType"]

    created = await ok(
        session,
        "create-analysis-session",
        assets=["aapl", "MSFT"],
        sessionType="equity",
        userId="mcp-user",
        ttlHours=2,
        tags=["earnings"],
    )
    sid = created["id"]
    assert created["assets"] == ["AAPL", "MSFT"] and created["status"] == "active"
    assert created["tags"] == ["earnings"] and created["source"] == "mcp"

    tracked = await ok(
        session,
        "track-query",
        sessionId=sid,
        queryType="price_history",
        parameters={"days": 30},
        executionTimeMs=12.5,
        cacheHit=True,
    )
    assert tracked == {"sessionId": sid, "seq": 0}
    message = await ok(session, "add-message", sessionId=sid, role="user", content="Compare them")
    assert message["seq"] == 1

    info = await ok(session, "get-session-info", sessionId=sid)
    assert info["query_count"] == 1 and info["message_count"] == 1 and info["cache_hits"] == 1
    assert [e["kind"] for e in info["recent_events"]] == ["query", "message"]

    extended = await ok(session, "extend-session", sessionId=sid, hours=3)
    assert extended["expiresAt"] > created["expires_at"]

    listed = await ok(session, "list-sessions", userId="mcp-user")
    assert [s["id"] for s in listed["sessions"]] == [sid]

    ended = await ok(session, "end-session", sessionId=sid, status="completed")
    assert ended["status"] == "completed" and ended["is_live"] is False
    assert (await ok(session, "list-sessions", userId="mcp-user"))["sessions"] == []
    archived = await ok(session, "list-sessions", userId="mcp-user", includeArchived=True)
    assert [s["id"] for s in archived["sessions"]] == [sid]

    stats = await ok(session, "get-session-analytics", userId="mcp-user", days=7)
    assert stats["total_sessions"] == 1 and stats["total_queries"] == 1

    is_error, data, text = await call(session, "track-query", sessionId=sid, queryType="price")
    assert is_error and data["error"]["code"] == "session_not_active" and "completed" in text

    unknown = str(uuid.uuid4())
    is_error, data, text = await call(session, "get-session-info", sessionId=unknown)
    assert is_error and data["error"]["code"] == "session_not_found" and "'sessionId'" in text

    is_error, data, text = await call(
        session, "create-analysis-session", sessionType="equity", ttlHours=-1
    )
    assert is_error and data["error"]["field"] == "ttlHours" and "'ttlHours'" in text


def test_stdio_transport():
    anyio.run(_stdio_tour)
    assert ArchivedSession.objects.filter(user_id="mcp-user", status="completed").count() == 1


async def _stdio_tour():
    async with stdio_session() as session:
        await tour(session)


def test_http_transport(server_url):
    key = make_key("read", "write")

    async def run():
        async with http_session(server_url, key) as session:
            await tour(session)

    anyio.run(run)
    assert ArchivedSession.objects.filter(user_id="mcp-user", status="completed").count() == 1


# ---- HTTP auth ------------------------------------------------------------------------------


def test_http_without_a_valid_key_is_401(server_url):
    revoked, secret = apikeys.create_api_key("old", ["read", "write"])
    apikeys.revoke(revoked)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for header in [None, "Bearer nope", "Basic dXNlcjpwYXNz", f"Bearer {secret}"]:
        headers = {"Accept": "application/json, text/event-stream"}
        if header:
            headers["Authorization"] = header
        response = httpx2.post(f"{server_url}/mcp", json=body, headers=headers, timeout=10)
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_http_read_only_key_can_read_but_not_write(server_url):
    reader = make_key("read")
    sid = str(get_session_store().create_session(session_type="agent", user_id="r").id)

    async def run():
        async with http_session(server_url, reader) as session:
            assert (await ok(session, "get-session-info", sessionId=sid))["id"] == sid
            await ok(session, "list-sessions", userId="r")
            await ok(session, "get-session-analytics")
            for tool, arguments in [
                ("create-analysis-session", {"sessionType": "equity"}),
                ("track-query", {"sessionId": sid, "queryType": "p"}),
                ("add-message", {"sessionId": sid, "role": "user", "content": "x"}),
                ("extend-session", {"sessionId": sid, "hours": 1}),
                ("end-session", {"sessionId": sid}),
            ]:
                is_error, data, text = await call(session, tool, **arguments)
                assert is_error and data["error"]["code"] == "forbidden" and "write" in text

    anyio.run(run)
    session = get_session_store().get_session(sid)
    assert session.status == "active" and session.event_count == 0
    assert get_session_store().live_counts()["total"] == 1


# ---- argument errors name the argument and change nothing ------------------------------------

BAD_ARGUMENTS = [
    ("create-analysis-session", {}, "sessionType"),
    ("create-analysis-session", {"sessionType": "stocks"}, "sessionType"),
    ("create-analysis-session", {"sessionType": "equity", "ttlHours": 0}, "ttlHours"),
    ("create-analysis-session", {"sessionType": "equity", "ttlHours": 1000}, "ttlHours"),
    ("create-analysis-session", {"sessionType": "equity", "ttlHours": "24"}, "ttlHours"),
    ("create-analysis-session", {"sessionType": "equity", "assets": "AAPL"}, "assets"),
    ("create-analysis-session", {"sessionType": "equity", "assets": ["$$"]}, "assets.0"),
    ("create-analysis-session", {"sessionType": "equity", "tags": ["t"] * 21}, "tags"),
    ("create-analysis-session", {"sessionType": "equity", "userId": "u" * 129}, "userId"),
    ("create-analysis-session", {"sessionType": "equity", "colour": "red"}, "colour"),
    ("get-session-info", {}, "sessionId"),
    ("get-session-info", {"sessionId": "abc"}, "sessionId"),
    ("list-sessions", {}, "userId"),
    ("list-sessions", {"userId": "u", "limit": 0}, "limit"),
    ("list-sessions", {"userId": "u", "includeArchived": "yes"}, "includeArchived"),
    ("list-sessions", {"userId": "u", "cursor": "garbage!"}, "cursor"),
    ("extend-session", {"sessionId": "SID", "hours": 0}, "hours"),
    ("extend-session", {"sessionId": "SID", "hours": 1000}, "hours"),
    ("get-session-analytics", {"days": 0}, "days"),
    ("get-session-analytics", {"sessionType": "stocks"}, "sessionType"),
    ("track-query", {"sessionId": "SID"}, "queryType"),
    (
        "track-query",
        {"sessionId": "SID", "queryType": "p", "executionTimeMs": -1},
        "executionTimeMs",
    ),
    ("track-query", {"sessionId": "SID", "queryType": "p", "parameters": "x"}, "parameters"),
    ("track-query", {"sessionId": "SID", "queryType": "p", "parameters": {"a": "\x00"}}, None),
    ("add-message", {"sessionId": "SID", "role": "robot", "content": "x"}, "role"),
    ("add-message", {"sessionId": "SID", "role": "user", "content": ""}, "content"),
    ("end-session", {"sessionId": "SID", "status": "paused"}, "status"),
]


def test_http_bad_arguments_are_error_results_naming_the_argument(server_url):
    key = make_key("read", "write")
    store = get_session_store()
    sid = str(store.create_session(session_type="equity", user_id="args", ttl_hours=1).id)
    before = store.get_session(sid)

    async def run():
        async with http_session(server_url, key) as session:
            for tool, arguments, argument in BAD_ARGUMENTS:
                arguments = {k: sid if val == "SID" else val for k, val in arguments.items()}
                is_error, data, text = await call(session, tool, **arguments)
                assert is_error, (tool, arguments)
                assert data["error"]["reason"], (tool, arguments)
                assert data["error"]["field"] == argument, (tool, arguments, data)
                if argument:
                    assert f"'{argument}'" in text, text

    anyio.run(run)
    after = store.get_session(sid)
    assert after.expires_at == before.expires_at and after.event_count == 0
    assert after.status == "active"
    assert store.live_counts()["total"] == 1


def test_http_query_limit(server_url):
    RetentionPolicy.objects.create(session_type="macro", max_queries_per_session=1)
    clear_policy_cache()
    key = make_key("read", "write")

    async def run():
        async with http_session(server_url, key) as session:
            sid = (await ok(session, "create-analysis-session", sessionType="macro"))["id"]
            await ok(session, "track-query", sessionId=sid, queryType="rates")
            is_error, data, _ = await call(session, "track-query", sessionId=sid, queryType="x")
            assert is_error and data["error"]["code"] == "query_limit_exceeded"
            info = await ok(session, "get-session-info", sessionId=sid)
            assert info["query_count"] == 1 and info["status"] == "active"
            # Ending twice: the second is refused as not active.
            await ok(session, "end-session", sessionId=sid)
            is_error, data, _ = await call(session, "end-session", sessionId=sid)
            assert is_error and data["error"]["code"] == "session_not_active"

    anyio.run(run)


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators")
def test_the_web_app_still_serves_django_and_static_files_under_asgi(server_url):
    assert httpx2.get(f"{server_url}/api/v1/openapi.json", timeout=10).status_code == 200
    static = httpx2.get(f"{server_url}/static/ninja/swagger-ui.css", timeout=10)
    assert static.status_code == 200 and len(static.content) > 1000
