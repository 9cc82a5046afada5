"""POST /api/v1/ingest: per-item answers, one bad item never sinks the others, event ids applied
once; and every route refuses query parameters and body fields it does not know (400)."""

import json
import uuid

import pytest
import redis
from django.test import Client

from sessions_app import apikeys
from sessions_app.api.ingest import MAX_OPERATIONS
from sessions_app.store import SessionStore
from sessions_app.store.errors import StoreUnavailable

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


def test_batch_keeps_each_sessions_order_and_applies_event_ids_once(headers, store):
    sid = f"batch-{uuid.uuid4().hex[:8]}"
    other = store.create_session(session_type="crypto")
    live_ops = [
        {"op": "create", "event_id": "c", "session_id": sid, "session_type": "agent"},
        {"op": "query", "event_id": "q1", "session_id": sid, "query_type": "price"},
        {"op": "query", "event_id": "o1", "session_id": str(other.id), "query_type": "p"},
        {"op": "query", "event_id": "q1", "session_id": sid, "query_type": "price"},
        {"op": "metadata", "event_id": "m", "session_id": sid, "purpose": "review"},
        {"op": "counters", "event_id": "r", "session_id": sid, "add_processing_time": 1.5},
    ]
    body = ingest(headers, live_ops).json()
    assert [item["status"] for item in body["items"]] == [
        "accepted",
        "accepted",
        "accepted",
        "duplicate",  # the same event id twice in one batch
        "accepted",
        "accepted",
    ]
    assert body["items"][0]["session_id"] == sid
    # The whole batch again, as a client retrying after a lost answer: nothing applies twice
    # (the create's event id is its idempotency key: the same session comes back).
    again = ingest(headers, live_ops).json()
    assert [item["status"] for item in again["items"][:4]] == [
        "accepted",
        "duplicate",
        "duplicate",
        "duplicate",
    ]
    assert store.get_session(sid).query_count == 1
    assert store.get_session(str(other.id)).query_count == 1
    # An end waits for the session's earlier writes and holds back its later ones.
    ending = [
        {"op": "message", "event_id": "a", "session_id": sid, "role": "user", "content": "x"},
        {"op": "end", "event_id": "e", "session_id": sid, "status": "completed"},
        {"op": "query", "event_id": "q2", "session_id": sid, "query_type": "price"},
    ]
    body = ingest(headers, ending).json()
    assert [item["status"] for item in body["items"]] == ["accepted", "accepted", "error"]
    assert body["items"][2]["error"]["code"] == "session_not_active"
    session = store.get_session(sid)
    assert (session.status, session.query_count, session.message_count) == ("completed", 1, 1)
    assert session.purpose == "review"
    assert ingest(headers, ending[1:2]).json()["items"][0]["status"] == "duplicate"


@pytest.mark.parametrize("path", ["/stats", "/user-summary", "/sessions"])
def test_nul_in_user_id_is_422_not_503(headers, path):
    response = Client().get(BASE + path, {"user_id": "\x00"}, headers=headers)
    assert response.status_code == 422, response.content
    assert response.json()["error"]["field"] == "user_id"


def test_repeated_single_valued_query_parameter_is_400(headers):
    response = Client().get(BASE + "/sessions?user_id=a&user_id=b", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "repeated_parameter",
        "field": "user_id",
        "reason": "may be given only once",
    }
    # Lists repeat: tags=a&tags=b is two tags.
    response = Client().get(BASE + "/sessions?tags=a&tags=b", headers=headers)
    assert response.status_code == 200, response.content


# ---- event ids of writes without a timeline entry, lost replies, merged script calls ---------


class LosingRedis(redis.Redis):
    """A real client whose next `lose` replies are lost after Redis applied the commands: the
    "Redis timeout after the write landed" case a client retries."""

    lose = 0

    def _lost(self):
        if self.lose:
            self.lose -= 1
            raise redis.exceptions.TimeoutError("reply lost after the write landed")

    def evalsha(self, *args, **kwargs):
        result = super().evalsha(*args, **kwargs)
        self._lost()
        return result

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def execute_then_lose(*args, **kwargs):
            result = execute(*args, **kwargs)
            self._lost()
            return result

        pipe.execute = execute_then_lose
        return pipe


@pytest.fixture
def losing_redis(settings):
    return LosingRedis.from_url(settings.REDIS_URL, decode_responses=True)


def test_a_retried_counters_write_is_counted_once_through_the_store(store, losing_redis):
    session = store.create_session(user_id="u-counters")
    assert store.update_session(session.id, increment_requests=True, event_id="r1") is True
    assert store.update_session(session.id, increment_requests=True, event_id="r1") is False
    losing = SessionStore(client=losing_redis)
    losing_redis.lose = 1
    with pytest.raises(StoreUnavailable):
        losing.update_session(session.id, add_processing_time=2.5, mark_error=True, event_id="r2")
    # The retry finds its event id: the counters moved once, by the attempt that landed.
    assert (
        losing.update_session(session.id, add_processing_time=2.5, mark_error=True, event_id="r2")
        is False
    )
    assert store.update_session(session.id, increment_requests=True) is True  # no id: counted
    read = store.get_session(session.id)
    assert (read.request_count, read.error_count, read.total_processing_time) == (2, 1, 2.5)
    assert read.event_count == 0  # counters add no timeline entry


def test_a_retried_counters_operation_is_a_duplicate_in_a_batch(headers, store, monkeypatch):
    from sessions_app import redis_client

    sid = str(store.create_session(user_id="u-counters").id)
    operations = [
        {"op": "counters", "session_id": sid, "event_id": "c1", "increment_requests": True},
        {"op": "counters", "session_id": sid, "event_id": "c2", "add_processing_time": 0.25},
        {"op": "query", "session_id": sid, "event_id": "q1", "query_type": "price"},
    ]
    body = ingest(headers, operations[:1]).json()
    assert body["items"][0]["status"] == "accepted"
    # The batch lands but its answer is lost: 503; the client retries it whole.
    losing = LosingRedis.from_url(redis_client.settings.REDIS_URL, decode_responses=True)
    losing.lose = 1
    monkeypatch.setattr(redis_client, "get_store_redis", lambda: losing)
    assert ingest(headers, operations).status_code == 503
    body = ingest(headers, operations).json()
    assert [item["status"] for item in body["items"]] == ["duplicate"] * 3
    read = store.get_session(sid)
    # c1 and c2 each count one request (the default), once each.
    assert (read.request_count, read.total_processing_time, read.query_count) == (2, 0.25, 1)


def test_merged_writes_of_one_session_answer_each_event(headers, store):
    """A session's events in one batch go out as one script call; when that call refuses on a
    limit, each event still gets its own answer (those under the limit are applied)."""
    from sessions_app.models import RetentionPolicy

    RetentionPolicy.objects.create(session_type="agent", max_queries_per_session=3)
    sid = str(store.create_session(session_type="agent", user_id="u-merge").id)
    other = str(store.create_session(session_type="agent", user_id="u-merge").id)
    operations = [
        {"op": "query", "session_id": sid, "event_id": f"q{i}", "query_type": "price"}
        for i in range(5)
    ]
    operations.insert(
        2, {"op": "message", "session_id": other, "event_id": "m", "role": "user", "content": "hi"}
    )
    operations.append(
        {"op": "counters", "session_id": other, "event_id": "c", "increment_requests": True}
    )
    body = ingest(headers, operations).json()
    statuses = [item["status"] for item in body["items"]]
    assert statuses == ["accepted"] * 4 + ["error", "error", "accepted"]
    assert body["items"][4]["error"]["code"] == "query_limit_exceeded"
    assert [item["seq"] for item in body["items"][:2]] == [0, 1]
    assert store.get_session(sid).query_count == 3
    assert store.get_session(other).request_count == 1


def test_pipelined_script_calls_load_a_script_the_server_does_not_have(settings):
    """Batches send EVALSHA without asking SCRIPT EXISTS first: a script the server lost
    (restart, SCRIPT FLUSH) answers NOSCRIPT, is loaded, and only those calls are sent again."""
    from sessions_app.store.sync import run_pipelined

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    unknown = client.register_script(f"return ARGV[1] .. '-{uuid.uuid4().hex}'")
    known = client.register_script("return ARGV[1]")
    client.script_load(known.script)
    assert client.script_exists(unknown.sha) == [False]
    calls = [(known, ["k"], ["a"]), (unknown, ["k"], ["b"]), (known, ["k"], ["c"])]
    replies = run_pipelined(client, calls)
    assert replies[0] == "a" and replies[1].startswith("b-") and replies[2] == "c"
    assert client.script_exists(unknown.sha) == [True]
