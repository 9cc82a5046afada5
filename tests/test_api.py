"""REST API /api/v1/: every endpoint's happy path, auth failures, validation errors, unknown ids,
writes after end, the query limit, idempotent create, and the one error shape."""

import json
import uuid

import pytest
import redis
from django.test import Client

from sessions_app import apikeys
from sessions_app import store as store_module
from sessions_app.models import RetentionPolicy
from sessions_app.models import Session as ArchivedSession
from sessions_app.policies import clear_policy_cache
from sessions_app.store import get_session_store

pytestmark = pytest.mark.django_db

BASE = "/api/v1"


class ApiClient:
    """Django's test client with a bearer key and JSON bodies."""

    def __init__(self, key: str | None):
        self.client = Client(enforce_csrf_checks=True)  # bearer keys must not need CSRF
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def _send(self, method, path, body=None, raw=None, headers=None):
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        kwargs = {"headers": {**self.headers, **(headers or {})}}
        if data is not None:
            kwargs.update(data=data, content_type="application/json")
        return getattr(self.client, method)(BASE + path, **kwargs)

    def get(self, path, **params):
        return self.client.get(BASE + path, params, headers=self.headers)

    def post(self, path, body=None, **kw):
        return self._send("post", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self._send("put", path, body, **kw)

    def delete(self, path):
        return self._send("delete", path)


@pytest.fixture
def api():
    _, secret = apikeys.create_api_key("read-write", ["read", "write"])
    return ApiClient(secret)


@pytest.fixture
def reader():
    _, secret = apikeys.create_api_key("reader", ["read"])
    return ApiClient(secret)


@pytest.fixture
def writer():
    _, secret = apikeys.create_api_key("writer", ["write"])
    return ApiClient(secret)


def assert_error(response, status, code=None, field=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "field", "reason"}
    assert body["error"]["reason"]
    if code:
        assert body["error"]["code"] == code
    if field:
        assert body["error"]["field"] == field
    return body["error"]


def create(api, **fields):
    body = {"session_type": "equity", "user_id": "u1", "assets": ["AAPL"], **fields}
    response = api.post("/sessions", body)
    assert response.status_code == 201, response.content
    return response.json()


def ended(api, **fields):
    session = create(api, **fields)
    assert api.post(f"/sessions/{session['id']}/end", {}).status_code == 200
    return session


def live_total():
    return get_session_store().live_counts()["total"]


# ---- docs and schema ------------------------------------------------------------------------


def test_openapi_document_lists_every_operation(client):
    response = client.get(f"{BASE}/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert operations == {
        "create_session",
        "list_sessions",
        "get_session",
        "get_timeline",
        "delete_session",
        "track_query",
        "add_message",
        "record_tool_call",
        "update_context",
        "store_result",
        "extend_session",
        "end_session",
        "session_stats",
        "user_summary",
        "ingest",
        "update_session_metadata",
        "record_request",
        "session_statistics",
    }
    create_body = schema["components"]["schemas"]["SessionCreateIn"]["properties"]
    assert create_body["assets"]["maxItems"] == 50
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"


def test_docs_page_is_served_locally_without_a_cdn(client):
    response = client.get(f"{BASE}/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert "https://" not in html
    assert client.get("/static/ninja/swagger-ui-bundle.js").status_code == 200


# ---- auth -----------------------------------------------------------------------------------

SID = "00000000-0000-4000-8000-000000000000"
WRITE_OPS = [
    ("post", "/sessions", {"session_type": "equity"}),
    ("post", f"/sessions/{SID}/queries", {"query_type": "price"}),
    ("post", f"/sessions/{SID}/messages", {"role": "user", "content": "hi"}),
    ("post", f"/sessions/{SID}/tool-calls", {"tool_name": "quote"}),
    ("put", f"/sessions/{SID}/context", {"key": "k", "value": 1}),
    ("put", f"/sessions/{SID}/results", {"key": "k", "value": 1}),
    ("post", f"/sessions/{SID}/extend", {"hours": 1}),
    ("post", f"/sessions/{SID}/end", {}),
    ("delete", f"/sessions/{SID}", None),
]
READ_OPS = [
    ("get", "/sessions?user_id=u1", None),
    ("get", f"/sessions/{SID}", None),
    ("get", f"/sessions/{SID}/timeline", None),
    ("get", "/stats", None),
    ("get", "/user-summary?user_id=u1", None),
]


def call(client, method, path, body):
    if method == "get":
        return client.client.get(BASE + path, headers=client.headers)
    if method == "delete":
        return client.delete(path)
    return getattr(client, method)(path, body)


@pytest.mark.parametrize(("method", "path", "body"), WRITE_OPS + READ_OPS)
@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer fs_000000000000_" + "A" * 43,
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-key",
    ],
)
def test_missing_or_invalid_key_is_401(method, path, body, header):
    client = ApiClient(None)
    if header:
        client.headers = {"Authorization": header}
    response = call(client, method, path, body)
    assert_error(response, 401, "unauthorized", "Authorization")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_is_401():
    key, secret = apikeys.create_api_key("gone", ["read", "write"])
    apikeys.revoke(key)
    assert_error(ApiClient(secret).post("/sessions", {"session_type": "equity"}), 401)
    assert live_total() == 0


@pytest.mark.parametrize(("method", "path", "body"), WRITE_OPS)
def test_read_only_key_cannot_write(reader, method, path, body):
    response = call(reader, method, path, body)
    error = assert_error(response, 403, "forbidden", "Authorization")
    assert "write" in error["reason"]
    assert live_total() == 0


@pytest.mark.parametrize(("method", "path", "body"), READ_OPS)
def test_write_only_key_cannot_read(writer, method, path, body):
    error = assert_error(call(writer, method, path, body), 403, "forbidden")
    assert "read" in error["reason"]


def test_api_key_use_is_recorded(api):
    from sessions_app.models import ApiKey

    api.get("/sessions", user_id="u1")
    assert ApiKey.objects.get(name="read-write").last_used_at is not None


# ---- create ---------------------------------------------------------------------------------


def test_create_session(api):
    response = api.post(
        "/sessions",
        {
            "session_type": "crypto",
            "user_id": "analyst-1",
            "assets": ["btc-usd", "ETH-USD"],
            "tags": ["weekly"],
            "ttl_hours": 2,
            "purpose": "weekly review",
            "source": "web",
            "ip": "10.0.0.1",
            "preferences": {"currency": "EUR"},
            "metadata": {"app": "x"},
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert uuid.UUID(body["id"]).version == 7  # generated ids are time-ordered
    assert body["status"] == "active" and body["is_live"] is True
    assert body["assets"] == ["BTC-USD", "ETH-USD"]
    assert body["session_type"] == "crypto"
    assert body["preferences"] == {"currency": "EUR"}
    assert body["ip"] == "10.0.0.1"
    assert body["query_count"] == 0
    stored = get_session_store().get_session(body["id"])
    assert stored is not None and stored.user_id == "analyst-1" and stored.tags == ["weekly"]


def test_create_with_idempotency_key_returns_the_same_session(api):
    body = {"session_type": "equity", "user_id": "retry-user"}
    headers = {"Idempotency-Key": "req-123"}
    first = api.post("/sessions", body, headers=headers)
    second = api.post("/sessions", body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    other = api.post("/sessions", body, headers={"Idempotency-Key": "req-456"})
    assert other.json()["id"] != first.json()["id"]
    page = api.get("/sessions", user_id="retry-user").json()
    assert len(page["items"]) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "session_type"),
        ({"session_type": "stocks"}, "session_type"),
        ({"session_type": "equity", "ttl_hours": 0}, "ttl_hours"),
        ({"session_type": "equity", "ttl_hours": -3}, "ttl_hours"),
        ({"session_type": "equity", "ttl_hours": 1000}, "ttl_hours"),  # past the 168 h max TTL
        ({"session_type": "equity", "ttl_hours": "soon"}, "ttl_hours"),
        ({"session_type": "equity", "assets": ["A"] * 51}, "assets"),
        ({"session_type": "equity", "assets": ["$$$"]}, "assets.0"),
        ({"session_type": "equity", "assets": "AAPL"}, "assets"),
        ({"session_type": "equity", "tags": ["x" * 65]}, "tags.0"),
        ({"session_type": "equity", "user_id": "u" * 129}, "user_id"),
        ({"session_type": "equity", "purpose": "p" * 2001}, "purpose"),
        ({"session_type": "equity", "ip": "999.1.1.1"}, "ip"),
        ({"session_type": "equity", "preferences": [1, 2]}, "preferences"),
        ({"session_type": "equity", "metadata": {"blob": "x" * 40_000}}, "metadata"),
        ({"session_type": "equity", "metadata": {"bad": "nul\u0000"}}, "metadata"),
        ({"session_type": "equity", "user_id": "a\u0000b"}, "user_id"),
    ],
)
def test_create_rejects_bad_input_and_creates_nothing(api, body, field):
    error = assert_error(api.post("/sessions", body), 422, field=field)
    assert error["code"] in {"invalid_input", "invalid_ttl", "invalid_payload"}
    assert live_total() == 0


def test_create_rejects_a_bad_idempotency_key(api):
    response = api.post(
        "/sessions", {"session_type": "equity"}, headers={"Idempotency-Key": "x" * 200}
    )
    assert_error(response, 422, "invalid_input", "Idempotency-Key")
    assert live_total() == 0


@pytest.mark.parametrize(
    "raw",
    ['{"session_type": "equity"', "not json", '{"session_type": "equity", "ttl_hours": NaN}'],
)
def test_malformed_json_is_400(api, raw):
    response = api.post("/sessions", raw=raw)
    assert response.status_code in (400, 422)
    assert_error(response, response.status_code)
    assert live_total() == 0


def test_huge_numbers_and_lone_surrogates_are_rejected_not_500(api):
    response = api.post("/sessions", raw='{"session_type": "equity", "ttl_hours": 1e999}')
    assert_error(response, 422, "invalid_payload")
    response = api.post("/sessions", raw='{"session_type": "equity", "purpose": "\\ud800"}')
    assert_error(response, 422, "invalid_payload", "purpose")
    response = api.post("/sessions", raw="[" * 100_000 + "]" * 100_000)
    assert response.status_code in (400, 422)
    assert live_total() == 0


def test_body_too_large_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = {"session_type": "equity", "purpose": "x" * 20_000}
    assert_error(api.post("/sessions", body), 413, "payload_too_large")
    assert live_total() == 0


# ---- read -----------------------------------------------------------------------------------


def test_get_session_with_state_and_recent_events(api):
    session = create(api)
    sid = session["id"]
    for n in range(3):
        api.post(f"/sessions/{sid}/queries", {"query_type": "price", "parameters": {"n": n}})
    api.put(f"/sessions/{sid}/context", {"key": "focus", "value": {"sector": "tech"}})
    api.put(f"/sessions/{sid}/results", {"key": "beta", "value": 1.2})

    body = api.get(f"/sessions/{sid}", recent_events=2).json()
    assert body["id"] == sid
    assert body["query_count"] == 3
    assert body["context"] == {"focus": {"sector": "tech"}}
    assert body["intermediate_results"] == {"beta": 1.2}
    assert [e["parameters"]["n"] for e in body["recent_events"]] == [1, 2]
    assert body["recent_events"][0]["kind"] == "query"


def test_get_unknown_session_is_404(api):
    assert_error(api.get(f"/sessions/{uuid.uuid4()}"), 404, "session_not_found", "session_id")


def test_get_with_a_bad_id_or_parameter_is_422(api):
    assert_error(api.get("/sessions/bad$id"), 422, "invalid_input", "session_id")
    sid = create(api)["id"]
    assert_error(api.get(f"/sessions/{sid}", recent_events=500), 422, field="recent_events")


def test_get_archived_session(api):
    session = ended(api)
    body = api.get(f"/sessions/{session['id']}").json()
    assert body["status"] == "completed"
    assert body["is_live"] is False


def test_timeline_pages(api):
    sid = create(api)["id"]
    api.post(f"/sessions/{sid}/queries", {"query_type": "price"})
    api.post(f"/sessions/{sid}/messages", {"role": "user", "content": "and now?"})
    api.post(f"/sessions/{sid}/tool-calls", {"tool_name": "quote", "tokens_in": 5})
    first = api.get(f"/sessions/{sid}/timeline", limit=2).json()
    assert first["total"] == 3
    assert [e["kind"] for e in first["items"]] == ["query", "message"]
    rest = api.get(f"/sessions/{sid}/timeline", offset=2, limit=2).json()
    assert [(e["seq"], e["kind"], e["tokens_in"]) for e in rest["items"]] == [(2, "tool_call", 5)]


def test_timeline_of_archived_session(api):
    sid = create(api)["id"]
    api.post(f"/sessions/{sid}/queries", {"query_type": "price"})
    api.post(f"/sessions/{sid}/end", {"status": "failed"})
    body = api.get(f"/sessions/{sid}/timeline").json()
    assert body["total"] == 1 and body["items"][0]["query_type"] == "price"


def test_timeline_errors(api):
    assert_error(api.get(f"/sessions/{uuid.uuid4()}/timeline"), 404, "session_not_found")
    sid = create(api)["id"]
    assert_error(api.get(f"/sessions/{sid}/timeline", limit=0), 422, field="limit")
    assert_error(api.get(f"/sessions/{sid}/timeline", offset=-1), 422, field="offset")


def test_list_sessions_live_and_archived_with_cursor(api):
    done = ended(api, user_id="lister")
    live = [create(api, user_id="lister")["id"] for _ in range(3)]
    create(api, user_id="someone-else")

    only_live = api.get("/sessions", user_id="lister").json()
    assert {item["id"] for item in only_live["items"]} == set(live)

    seen, cursor = [], None
    while True:
        params = {"user_id": "lister", "include_archived": "true", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/sessions", **params).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [item["id"] for item in seen] == [*reversed(live), done["id"]]
    assert seen[-1]["is_live"] is False and seen[-1]["status"] == "completed"


def test_list_sessions_errors(api):
    assert_error(api.get("/sessions", user_id=""), 422, "invalid_input", "user_id")
    assert_error(api.get("/sessions", status="sleeping"), 422, field="status")
    assert_error(api.get("/sessions", user_id="u1", cursor="garbage!"), 422, field="cursor")
    assert_error(api.get("/sessions", user_id="u1", limit=0), 422, field="limit")
    # Status/tag lists are one page: a cursor there names the field and the reason.
    response = api.get("/sessions", status="active", cursor="0")
    assert_error(response, 422, "invalid_input", "cursor")
    assert "user_id" in response.json()["error"]["reason"]


# ---- tracking -------------------------------------------------------------------------------


def test_track_query(api):
    sid = create(api)["id"]
    response = api.post(
        f"/sessions/{sid}/queries",
        {
            "query_type": "Price_History",
            "parameters": {"symbol": "AAPL", "days": 30},
            "result_summary": "30 rows",
            "execution_time_ms": 12.5,
            "cache_hit": True,
        },
    )
    assert response.status_code == 201
    assert response.json() == {"session_id": sid, "seq": 0}
    session = get_session_store().get_session(sid)
    assert session.query_count == 1 and session.cache_hits == 1
    assert session.recent_events[0].query_type == "price_history"
    assert api.post(f"/sessions/{sid}/queries", {"query_type": "news"}).json()["seq"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "query_type"),
        ({"query_type": ""}, "query_type"),
        ({"query_type": "9lives"}, "query_type"),
        ({"query_type": "p", "execution_time_ms": -1}, "execution_time_ms"),
        ({"query_type": "p", "execution_time_ms": 1e12}, "execution_time_ms"),
        ({"query_type": "p", "parameters": "x"}, "parameters"),
        ({"query_type": "p", "parameters": {"x": "y" * 40_000}}, "parameters"),
        ({"query_type": "p", "cache_hit": "maybe"}, "cache_hit"),
        ({"query_type": "p", "result_summary": "r" * 4001}, "result_summary"),
    ],
)
def test_track_query_rejects_bad_input_and_changes_nothing(api, body, field):
    sid = create(api)["id"]
    assert_error(api.post(f"/sessions/{sid}/queries", body), 422, field=field)
    assert get_session_store().get_session(sid).event_count == 0


def test_writes_to_unknown_sessions_are_404(api):
    sid = uuid.uuid4()
    for method, path, body in WRITE_OPS[1:]:
        response = call(api, method, path.replace(SID, str(sid)), body)
        assert_error(response, 404, "session_not_found", "session_id")


def test_writes_after_end_are_409_and_change_nothing(api):
    sid = ended(api)["id"]
    before = api.get(f"/sessions/{sid}").json()
    for method, path, body in WRITE_OPS[1:-1]:
        response = call(api, method, path.replace(SID, sid), body)
        assert_error(response, 409, "session_not_active", "session_id")
    after = api.get(f"/sessions/{sid}").json()
    assert after == before


def test_over_the_query_limit_is_409_and_the_session_stays_intact(api):
    RetentionPolicy.objects.create(session_type="macro", max_queries_per_session=2)
    clear_policy_cache()
    sid = create(api, session_type="macro")["id"]
    for _ in range(2):
        assert api.post(f"/sessions/{sid}/queries", {"query_type": "rate"}).status_code == 201
    error = assert_error(
        api.post(f"/sessions/{sid}/queries", {"query_type": "rate"}), 409, "query_limit_exceeded"
    )
    assert "2" in error["reason"]
    session = api.get(f"/sessions/{sid}").json()
    assert session["query_count"] == 2 and session["status"] == "active"
    # Messages are not queries: still accepted.
    assert (
        api.post(f"/sessions/{sid}/messages", {"role": "user", "content": "x"}).status_code == 201
    )


def test_add_message(api):
    sid = create(api, session_type="agent")["id"]
    response = api.post(
        f"/sessions/{sid}/messages",
        {"role": "tool", "content": "42", "tool_name": "calc", "invocation_id": "c1"},
    )
    assert response.status_code == 201 and response.json()["seq"] == 0
    event = get_session_store().get_session(sid).recent_events[0]
    assert (event.kind, event.role, event.tool_name, event.content) == (
        "message",
        "tool",
        "calc",
        "42",
    )
    # A model's answer with the tokens and cost it took: they add to the session's.
    answer = {"role": "assistant", "content": "AAPL", "tokens_in": 120, "tokens_out": 48}
    assert api.post(f"/sessions/{sid}/messages", {**answer, "cost": 0.25}).status_code == 201
    session = get_session_store().get_session(sid)
    assert (session.tokens_in, session.tokens_out, float(session.cost)) == (120, 48, 0.25)
    event = session.recent_events[-1]
    assert (event.tokens_in, event.tokens_out, event.cost) == (120, 48, 0.25)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "user", "content": "x", "tokens_in": -1}, "tokens_in"),
        ({"role": "user", "content": "x", "tokens_out": 1.5}, "tokens_out"),
        ({"role": "user", "content": "x", "cost": -0.01}, "cost"),
        ({"content": "x"}, "role"),
        ({"role": "robot", "content": "x"}, "role"),
        ({"role": "user"}, "content"),
        ({"role": "user", "content": ""}, "content"),
        ({"role": "user", "content": "x" * 32_001}, "content"),
        ({"role": "user", "content": "x", "tool_name": "t" * 129}, "tool_name"),
    ],
)
def test_add_message_rejects_bad_input(api, body, field):
    sid = create(api)["id"]
    assert_error(api.post(f"/sessions/{sid}/messages", body), 422, field=field)
    assert get_session_store().get_session(sid).event_count == 0


def test_record_tool_call(api):
    sid = create(api, session_type="agent")["id"]
    response = api.post(
        f"/sessions/{sid}/tool-calls",
        {
            "tool_name": "get_quote",
            "invocation_id": "i-1",
            "duration_ms": 85,
            "tokens_in": 100,
            "tokens_out": 50,
            "cost": 0.25,
        },
    )
    assert response.status_code == 201
    body = api.get(f"/sessions/{sid}").json()
    assert body["tool_call_count"] == 1
    assert (body["tokens_in"], body["tokens_out"], body["cost"]) == (100, 50, 0.25)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "tool_name"),
        ({"tool_name": ""}, "tool_name"),
        ({"tool_name": "t", "tokens_in": -1}, "tokens_in"),
        ({"tool_name": "t", "tokens_out": 1.5}, "tokens_out"),
        ({"tool_name": "t", "cost": -0.01}, "cost"),
        ({"tool_name": "t", "duration_ms": -5}, "duration_ms"),
    ],
)
def test_record_tool_call_rejects_bad_input(api, body, field):
    sid = create(api)["id"]
    assert_error(api.post(f"/sessions/{sid}/tool-calls", body), 422, field=field)
    assert get_session_store().get_session(sid).event_count == 0


@pytest.mark.parametrize(
    ("path", "state"), [("context", "context"), ("results", "intermediate_results")]
)
def test_set_context_and_results(api, path, state):
    sid = create(api)["id"]
    response = api.put(f"/sessions/{sid}/{path}", {"key": "a", "value": [1, 2]})
    assert response.status_code == 200 and response.json() == {"session_id": sid, "key": "a"}
    api.put(f"/sessions/{sid}/{path}", {"key": "b", "value": None})
    api.put(f"/sessions/{sid}/{path}", {"key": "a", "value": "replaced"})
    assert api.get(f"/sessions/{sid}").json()[state] == {"a": "replaced", "b": None}


@pytest.mark.parametrize("path", ["context", "results"])
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"value": 1}, "key"),
        ({"key": "", "value": 1}, "key"),
        ({"key": "k" * 129, "value": 1}, "key"),
        ({"key": "k", "value": "v" * 40_000}, "value"),
    ],
)
def test_set_entry_rejects_bad_input(api, path, body, field):
    sid = create(api)["id"]
    assert_error(api.put(f"/sessions/{sid}/{path}", body), 422, field=field)
    session = api.get(f"/sessions/{sid}").json()
    assert session["context"] == {} and session["intermediate_results"] == {}


# ---- lifecycle ------------------------------------------------------------------------------


def test_extend_session(api):
    session = create(api, ttl_hours=1)
    response = api.post(f"/sessions/{session['id']}/extend", {"hours": 2})
    assert response.status_code == 200
    assert response.json()["expires_at"] > session["expires_at"]
    stored = get_session_store().get_session(session["id"])
    assert stored.expires_at.isoformat()[:19] == response.json()["expires_at"][:19]


@pytest.mark.parametrize(
    ("hours", "code"),
    [(0, "invalid_input"), (-1, "invalid_input"), ("x", "invalid_input"), (500, "invalid_ttl")],
)
def test_extend_rejects_bad_hours(api, hours, code):
    session = create(api, ttl_hours=1)
    assert_error(
        api.post(f"/sessions/{session['id']}/extend", {"hours": hours}), 422, code, "hours"
    )
    assert api.get(f"/sessions/{session['id']}").json()["expires_at"] == session["expires_at"]


def test_end_session_archives_it(api):
    sid = create(api)["id"]
    api.post(f"/sessions/{sid}/queries", {"query_type": "price"})
    response = api.post(f"/sessions/{sid}/end", {"status": "abandoned"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "abandoned" and body["ended_at"] is not None
    assert body["query_count"] == 1
    assert ArchivedSession.objects.filter(id=sid, status="abandoned").exists()


def test_end_rejects_bad_status_and_ending_twice(api):
    sid = create(api)["id"]
    assert_error(api.post(f"/sessions/{sid}/end", {"status": "paused"}), 422, field="status")
    assert api.get(f"/sessions/{sid}").json()["status"] == "active"
    assert api.post(f"/sessions/{sid}/end", {}).status_code == 200
    assert_error(api.post(f"/sessions/{sid}/end", {}), 409, "session_not_active")


def test_delete_live_and_archived_sessions(api):
    live = create(api)["id"]
    archived = ended(api)["id"]
    for sid in (live, archived):
        response = api.delete(f"/sessions/{sid}")
        assert response.status_code == 204 and response.content == b""
        assert_error(api.get(f"/sessions/{sid}"), 404)
        assert_error(api.delete(f"/sessions/{sid}"), 404, "session_not_found")


# ---- analytics ------------------------------------------------------------------------------


def test_stats(api):
    sid = create(api, user_id="stats-user", session_type="crypto")["id"]
    api.post(f"/sessions/{sid}/queries", {"query_type": "price"})
    api.post(f"/sessions/{sid}/end", {})
    response = api.get("/stats", user_id="stats-user", session_type="crypto", days=7)
    assert response.status_code == 200, response.content
    assert isinstance(response.json(), dict) and response.json()
    assert_error(api.get("/stats", days=0), 422, field="days")
    assert_error(api.get("/stats", session_type="stocks"), 422, field="session_type")


def test_user_summary(api):
    sid = create(api, user_id="summary-user")["id"]
    api.post(f"/sessions/{sid}/end", {})
    response = api.get("/user-summary", user_id="summary-user", days=30)
    assert response.status_code == 200, response.content
    assert isinstance(response.json(), dict) and response.json()
    assert_error(api.get("/user-summary"), 422, field="user_id")
    assert_error(api.get("/user-summary", user_id="u", days=10_000), 422, field="days")


# ---- outages --------------------------------------------------------------------------------


def test_redis_down_is_503_and_nothing_half_written(api, monkeypatch):
    dead = redis.Redis(port=1, socket_timeout=0.2, socket_connect_timeout=0.2)
    monkeypatch.setattr(store_module, "_store", store_module.SessionStore(client=dead))
    response = api.post("/sessions", {"session_type": "equity"})
    error = assert_error(response, 503, "store_unavailable")
    assert "retry" in error["reason"]
    assert response["Retry-After"]
    assert_error(api.post(f"/sessions/{SID}/queries", {"query_type": "p"}), 503)


def test_postgres_down_is_503_not_500(api):
    from django.db import OperationalError, connection

    def refuse(execute, sql, params, many, context):
        raise OperationalError("connection refused")

    with connection.execute_wrapper(refuse):
        response = api.get("/sessions", user_id="u1")
    error = assert_error(response, 503, "database_unavailable")
    assert "retry" in error["reason"]
