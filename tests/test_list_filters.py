"""Issue 16 leftovers and issue 10: `list_sessions` by type and creation time over live and
archived sessions (store, REST, MCP); a cursor with filters is a clear 422; the MCP tools run on
the async store."""

import functools
import json
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from sessions_app import apikeys
from sessions_app.exceptions import InvalidInput
from sessions_app.mcp import tools
from sessions_app.models import Session
from sessions_app.store import SessionStore, get_session_store
from sessions_app.store.aio import AsyncSessionStore

pytestmark = pytest.mark.django_db


@pytest.fixture
def mixed():
    """Live equity + crypto sessions, and an archived equity one created 3 days ago."""
    store = get_session_store()
    equity = store.create_session(assets=["AAPL"], session_type="equity", user_id="lf")
    crypto = store.create_session(assets=["BTC"], session_type="crypto", user_id="lf")
    old = store.create_session(assets=["MSFT"], session_type="equity", user_id="lf")
    store.archive_session(old.id)
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    Session.objects.filter(id=old.id).update(created_at=three_days_ago)
    return store, equity, crypto, old


def ids(rows) -> set[str]:
    return {row.id for row in rows}


def test_store_filters_by_type_and_creation_time(mixed):
    store, equity, crypto, old = mixed
    assert ids(store.list_sessions(session_type="equity")) == {equity.id, old.id}
    assert ids(store.list_sessions(session_type="crypto")) == {crypto.id}
    yesterday = datetime.now(UTC) - timedelta(days=1)
    assert ids(store.list_sessions(created_from=yesterday)) == {equity.id, crypto.id}
    assert ids(store.list_sessions(created_to=yesterday)) == {old.id}
    assert ids(store.list_sessions(user_id="lf", created_to=yesterday)) == {old.id}
    assert ids(store.list_sessions(session_type="equity", created_to=yesterday.timestamp())) == {
        old.id
    }
    with pytest.raises(InvalidInput) as bad:
        store.list_sessions(created_from=yesterday, created_to=yesterday - timedelta(days=1))
    assert bad.value.field == "created_to"
    with pytest.raises(InvalidInput) as bad:
        store.list_sessions(created_from="yesterday")
    assert bad.value.field == "created_from"
    with pytest.raises(InvalidInput) as bad:
        store.list_sessions(session_type="stocks")
    assert bad.value.field == "session_type"


def _rest():
    _, secret = apikeys.create_api_key("lf", ["read", "write"])
    client = Client()
    headers = {"Authorization": f"Bearer {secret}"}
    return lambda **params: client.get("/api/v1/sessions", params, headers=headers)


def test_rest_lists_by_type_and_date_range(mixed):
    _, equity, crypto, old = mixed
    get = _rest()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    response = get(session_type="equity", include_archived="true")
    assert response.status_code == 200, response.content
    assert {item["id"] for item in response.json()["items"]} == {equity.id, old.id}
    response = get(created_to=yesterday, include_archived="true")
    assert {item["id"] for item in response.json()["items"]} == {old.id}
    response = get(created_from=yesterday)
    assert {item["id"] for item in response.json()["items"]} == {equity.id, crypto.id}
    response = get(session_type="stocks")
    assert response.status_code == 422 and response.json()["error"]["field"] == "session_type"
    for bad in ("2026-02-30", "yesterday", "1700000000"):
        response = get(created_from=bad)
        assert response.status_code == 422, (bad, response.content)
        assert response.json()["error"]["field"] == "created_from"


def test_rest_cursor_with_filters_is_a_clear_422(mixed):
    get = _rest()
    response = get(status="active", cursor="abc")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "cursor" and "user" in error["reason"]


def call(name: str, **arguments):
    return async_to_sync(tools.call_tool)(name, arguments)


@pytest.mark.django_db(transaction=True)
def test_mcp_list_sessions_by_type_and_date_range(mixed):
    _, _, crypto, old = mixed
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    result = call("list-sessions", sessionType="crypto")
    assert not result.is_error, result.content
    assert [s["id"] for s in result.structured_content["sessions"]] == [crypto.id]
    result = call("list-sessions", createdTo=yesterday, includeArchived=True)
    assert [s["id"] for s in result.structured_content["sessions"]] == [old.id]
    result = call("list-sessions", createdFrom="2026-02-30")
    assert result.is_error
    assert result.structured_content["error"]["field"] == "createdFrom"
    result = call("list-sessions", status="active", cursor="abc")
    assert result.structured_content["error"]["field"] == "cursor"


def test_mcp_tools_run_on_the_async_store(monkeypatch):
    """Store calls from MCP tools go through AsyncSessionStore, never the sync store."""
    seen = []

    def spy(name):
        original = getattr(AsyncSessionStore, name)

        @functools.wraps(original)
        async def wrapper(self, *args, **kwargs):
            seen.append(name)
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(AsyncSessionStore, name, wrapper)

    def forbid(name):
        def refuse(self, *args, **kwargs):
            raise AssertionError(f"the MCP server called the sync store's {name}")

        monkeypatch.setattr(SessionStore, name, refuse)

    for name in ("create_session", "add_query", "get_session", "get_timeline"):
        spy(name)
        forbid(name)
    created = call("create-analysis-session", sessionType="equity", assets=["AAPL"])
    assert not created.is_error, created.content
    session_id = created.structured_content["id"]
    tracked = call("track-query", sessionId=session_id, queryType="price")
    assert not tracked.is_error, tracked.content
    info = call("get-session-info", sessionId=session_id)
    assert info.structured_content["query_count"] == 1, json.dumps(info.structured_content)
    timeline = call("get-session-timeline", sessionId=session_id)
    assert timeline.structured_content["total"] == 1
    assert seen == ["create_session", "add_query", "get_session", "get_timeline"]
