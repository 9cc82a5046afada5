"""POST /api/v1/ingest: per-item answers, one bad item never sinks the others, event ids applied
once; and every route refuses query parameters and body fields it does not know (400)."""

import json
import uuid

import pytest
from django.test import Client

from sessions_app import apikeys
from sessions_app.api.ingest import MAX_OPERATIONS

pytestmark = pytest.mark.django_db

BASE = "/api/v1"


@pytest.fixture
def headers():
    _, secret = apikeys.create_api_key("ingest", ["read", "write"])
    return {"Authorization": f"Bearer {secret}"}


def post(headers, path, body):
    return Client().post(
        BASE + path, data=json.dumps(body), content_type="application/json", headers=headers
    )


def ingest(headers, operations):
    return post(headers, "/ingest", {"operations": operations})


def test_batch_applies_each_item_and_reports_each(headers, store):
    session = store.create_session(session_type="equity", user_id="u-batch")
    sid = str(session.id)
    response = ingest(
        headers,
        [
            {"op": "query", "session_id": sid, "event_id": "e1", "query_type": "price"},
            {"op": "query", "session_id": sid, "event_id": "e2", "execution_time_ms": -1},
            {"op": "message", "session_id": sid, "event_id": "e3", "role": "user", "content": "hi"},
            {"op": "teleport", "session_id": sid, "event_id": "e4"},
            {"op": "tool_call", "session_id": sid, "event_id": "e5", "tool_name": "quote"},
            {"op": "context", "session_id": sid, "event_id": "e6", "key": "k", "value": [1]},
            {"op": "result", "session_id": sid, "event_id": "e7", "key": "r", "value": {"a": 1}},
            {"op": "message", "session_id": sid, "event_id": "e8", "role": "user", "bogus": 1},
        ],
    )
    assert response.status_code == 200, response.content
    body = response.json()
    statuses = [item["status"] for item in body["items"]]
    assert statuses == [
        "accepted",
        "error",
        "accepted",
        "error",
        "accepted",
        "accepted",
        "accepted",
        "error",
    ]
    assert (body["accepted"], body["duplicate"], body["error"]) == (5, 0, 3)
    errors = {item["index"]: item["error"] for item in body["items"] if item["error"]}
    assert errors[1]["field"] == "query_type"  # required, reported before the bad number
    assert errors[3]["field"] == "op"
    assert errors[7] == {
        "code": "unknown_field",
        "field": "bogus",
        "reason": "is not a field of this request",
    }
    assert [item["seq"] for item in body["items"][:3:2]] == [0, 1]
    stored = store.get_session(sid)
    assert (stored.query_count, stored.message_count, stored.tool_call_count) == (1, 1, 1)
    assert stored.state.context == {"k": [1]}
    assert stored.state.intermediate_results == {"r": {"a": 1}}


def test_unknown_session_fails_only_its_item(headers, store):
    session = store.create_session(session_type="crypto")
    missing = str(uuid.uuid4())
    response = ingest(
        headers,
        [
            {"op": "query", "session_id": missing, "event_id": "a", "query_type": "price"},
            {"op": "query", "session_id": str(session.id), "event_id": "b", "query_type": "p"},
        ],
    )
    items = response.json()["items"]
    assert items[0]["status"] == "error"
    assert items[0]["error"]["code"] == "session_not_found"
    assert items[0]["error"]["field"] == "session_id"
    assert items[1]["status"] == "accepted"


def test_end_in_batch_then_writes_are_not_active(headers, store):
    session = store.create_session(session_type="macro")
    sid = str(session.id)
    response = ingest(
        headers,
        [
            {"op": "end", "session_id": sid, "event_id": "x1", "status": "failed"},
            {"op": "query", "session_id": sid, "event_id": "x2", "query_type": "p"},
        ],
    )
    items = response.json()["items"]
    assert items[0]["status"] == "accepted"
    assert items[1]["error"]["code"] == "session_not_active"
    assert store.get_session(sid).status == "failed"


def test_batch_size_is_limited(headers):
    op = {"op": "query", "session_id": "s", "event_id": "e", "query_type": "p"}
    response = ingest(headers, [op] * (MAX_OPERATIONS + 1))
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "operations"
    assert ingest(headers, []).status_code == 422


def test_batch_needs_write_scope():
    _, secret = apikeys.create_api_key("reader", ["read"])
    response = ingest({"Authorization": f"Bearer {secret}"}, [])
    assert response.status_code == 403


def test_unknown_query_parameter_is_400_naming_it(headers, store):
    response = Client().get(BASE + "/sessions", {"user_id": "u", "state": "x"}, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "state"
    response = Client().get(BASE + "/stats", {"colour": "red"}, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_parameter"
    assert response.json()["error"]["field"] == "colour"
    response = post(headers, "/sessions?dry_run=1", {"session_type": "equity"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "dry_run"


def test_unknown_body_field_is_400_naming_it(headers):
    response = post(headers, "/sessions", {"session_type": "equity", "colour": "red"})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "unknown_field",
        "field": "colour",
        "reason": "is not a field of this request",
    }
