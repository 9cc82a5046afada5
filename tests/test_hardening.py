"""Hardening (issue 11): limits derived from the columns, storable text and JSON, bounded dates,
neutralised CSV cells, and path/query input checked at the boundary. Each test reproduced a
defect found by hostile testing."""

import json
import time
from decimal import Decimal

import pytest
from django.db import connection

from sessions_app import archive
from sessions_app import validation as v
from sessions_app.archive import timeline
from sessions_app.exceptions import InvalidInput, InvalidPayload
from sessions_app.models import Session, SessionEvent
from sessions_app.store import QueryRecord

pytestmark = pytest.mark.django_db

HOUR = 3600


def _column_max(model, name) -> Decimal:
    field = model._meta.get_field(name)
    whole = field.max_digits - field.decimal_places
    return Decimal(10) ** whole - Decimal(1).scaleb(-field.decimal_places)


# ---- 1: every accepted value fits its column ------------------------------------------------


def test_limits_are_read_from_the_model_columns():
    assert Session._meta.get_field("user_id").max_length == v.MAX_USER_ID_LENGTH
    assert Session._meta.get_field("assets").base_field.max_length == v.MAX_ASSET_LENGTH
    assert Session._meta.get_field("tags").base_field.max_length == v.MAX_TAG_LENGTH
    assert SessionEvent._meta.get_field("tool_name").max_length == v.MAX_TOOL_NAME_LENGTH
    assert SessionEvent._meta.get_field("query_type").max_length == v.MAX_QUERY_TYPE_LENGTH
    # One event's cost fits the event column; a full session's sum fits the session column.
    assert Decimal(str(v.MAX_COST)) <= _column_max(SessionEvent, "cost")
    assert Decimal(str(v.MAX_COST)) * v.MAX_EVENTS_PER_SESSION <= _column_max(Session, "cost")
    _, bigint_max = connection.ops.integer_field_range("BigIntegerField")
    assert bigint_max >= v.MAX_TOKENS * v.MAX_EVENTS_PER_SESSION
    # The public mapping the REST and MCP schemas derive theirs from.
    assert v.LIMITS["cost"] == v.MAX_COST and v.LIMITS["user_id_length"] == v.MAX_USER_ID_LENGTH


def test_rest_and_mcp_schemas_use_the_derived_limits():
    from sessions_app.api import schemas
    from sessions_app.mcp import tools

    assert schemas.MAX_MS == v.MAX_DURATION_MS
    assert schemas.ToolCallIn.model_fields["cost"].metadata[-1].le == v.MAX_COST
    user_field = tools.AnalyticsArgs.model_fields["user_id"]
    assert any(getattr(m, "max_length", None) == v.MAX_USER_ID_LENGTH for m in user_field.metadata)


def test_ipv6_zone_ids_are_refused_not_stored(store):
    with pytest.raises(InvalidInput) as excinfo:
        store.create_session(session_type="agent", ip="fe80::1%eth0")
    assert excinfo.value.field == "ip" and "zone" in excinfo.value.reason
    # A plain link-local address is fine (and normalised).
    assert v.ip_address("FE80::1") == "fe80::1"


def test_costs_past_the_column_are_refused(store):
    session = store.create_session(session_type="agent")
    with pytest.raises(InvalidInput) as excinfo:
        store.record_tool_call(session.id, tool_name="t", cost=1_000_000)
    assert excinfo.value.field == "cost"


def test_a_session_at_every_limit_is_archived(store):
    """The largest values validation accepts all reach Postgres (101 max-cost calls included)."""
    session = store.create_session(
        session_type="agent",
        user_id="u" * v.MAX_USER_ID_LENGTH,
        assets=["A" * v.MAX_ASSET_LENGTH],
        tags=["t" * v.MAX_TAG_LENGTH],
        purpose="p" * v.MAX_PURPOSE_LENGTH,
        source="s" * v.MAX_SOURCE_LENGTH,
        device="d" * v.MAX_DEVICE_LENGTH,
        ip="ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    )
    for _ in range(101):
        store.record_tool_call(
            session.id,
            tool_name="t" * v.MAX_TOOL_NAME_LENGTH,
            invocation_id="i" * v.MAX_INVOCATION_ID_LENGTH,
            duration_ms=v.MAX_DURATION_MS,
            tokens_in=v.MAX_TOKENS,
            tokens_out=v.MAX_TOKENS,
            cost=v.MAX_COST,
        )
    store.add_query(
        session.id,
        QueryRecord(
            query_type="q" * v.MAX_QUERY_TYPE_LENGTH,
            execution_time_ms=v.MAX_DURATION_MS,
            result_summary="r" * v.MAX_SUMMARY_LENGTH,
        ),
    )
    counts = archive.archive_due_sessions(now=time.time() + 10 * 24 * HOUR)
    assert counts["failed"] == 0 and counts["archived"] == 1
    row = Session.objects.get(id=session.id)
    assert row.cost == Decimal(str(v.MAX_COST)) * 101
    assert timeline.count(row.id) == 102


def test_limit_sums_fit_for_a_full_session():
    # The per-session sum at the event cap, as the archiver writes it, fits numeric(p, s).
    total = Decimal(str(v.MAX_COST)) * v.MAX_EVENTS_PER_SESSION
    with connection.cursor() as cursor:
        field = Session._meta.get_field("cost")
        cursor.execute(
            f"SELECT %s::numeric({field.max_digits},{field.decimal_places})", [str(total)]
        )
        assert cursor.fetchone()[0] == total


# ---- 12, 16: text and JSON that PostgreSQL and our readers cannot take ----------------------


def test_lone_surrogates_are_refused_naming_the_field(store):
    with pytest.raises(InvalidInput) as excinfo:
        store.create_session(session_type="agent", purpose="bad \ud800 text")
    assert excinfo.value.field == "purpose" and "surrogate" in excinfo.value.reason
    with pytest.raises(InvalidInput) as excinfo:
        store.create_session(session_type="agent", tags=["ok", "bad\udfff"])
    assert excinfo.value.field == "tags"
    session = store.create_session(session_type="agent")
    with pytest.raises(InvalidPayload) as excinfo:
        store.update_context(session.id, "k", {"deep": ["fine", "bad \ud800"]})
    assert excinfo.value.field == "value" and "deep.1" in excinfo.value.reason
    with pytest.raises(InvalidPayload) as excinfo:
        store.create_session(session_type="agent", metadata={"bad\ud800key": 1})
    assert excinfo.value.field == "metadata"


def test_nul_in_tags_is_refused(store):
    with pytest.raises(InvalidInput) as excinfo:
        store.create_session(session_type="agent", tags=["a\x00b"])
    assert excinfo.value.field == "tags" and "NUL" in excinfo.value.reason


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("field", ["preferences", "metadata"])
def test_json_nesting_is_limited_at_input(store, field):
    store.create_session(session_type="agent", **{field: nested(v.MAX_JSON_DEPTH)})
    with pytest.raises(InvalidPayload) as excinfo:
        store.create_session(session_type="agent", **{field: nested(v.MAX_JSON_DEPTH + 1)})
    assert excinfo.value.field == field and "nested" in excinfo.value.reason
    # Far deeper than Python's recursion limit: still a clear error, not a RecursionError.
    with pytest.raises(InvalidPayload):
        store.create_session(session_type="agent", **{field: nested(5000)})


def test_json_nesting_is_limited_for_context_results_and_parameters(store):
    session = store.create_session(session_type="agent")
    too_deep = nested(900)
    with pytest.raises(InvalidPayload):
        store.update_context(session.id, "k", too_deep)
    with pytest.raises(InvalidPayload):
        store.store_intermediate_result(session.id, "k", [too_deep])
    with pytest.raises(InvalidPayload) as excinfo:
        store.add_query(session.id, QueryRecord(query_type="q", parameters=too_deep))
    assert excinfo.value.field == "parameters"


# ---- 3: open-ended and extreme history dates --------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "start=2024-01-01",  # "From" without "To"
        "end=2024-01-01",
        "start=1900-01-01&end=9998-12-31",
    ],
)
def test_history_open_and_wide_date_ranges_work(client, analyst, query):
    client.force_login(analyst)
    assert client.get(f"/history/?{query}").status_code == 200
    assert client.get(f"/history/export.csv?{query}").status_code == 200


@pytest.mark.parametrize("query", ["end=9999-12-31", "start=0001-01-01", "start=1899-12-31"])
def test_history_dates_out_of_range_are_a_clear_400(client, analyst, query):
    client.force_login(analyst)
    response = client.get(f"/history/?{query}")
    assert response.status_code == 400
    assert "between 1900-01-01 and 9998-12-31" in response.content.decode()
    assert client.get(f"/history/export.csv?{query}").status_code == 400


def test_overview_dates_out_of_range_are_a_clear_400(client, analyst):
    client.force_login(analyst)
    response = client.get("/?range=custom&start=0001-01-01&end=0001-01-02")
    assert response.status_code == 400
    assert "between 1900-01-01" in response.content.decode()


def test_day_bounds_clamp_open_ends():
    from datetime import date

    from sessions_app.metrics import day_bounds

    start, end = day_bounds(date.min, date.max)
    assert start.date() == v.MIN_DAY and end.date() == date(9999, 1, 1)


# ---- 14, 15, 17: path and query input checked at the boundary ---------------------------------


@pytest.mark.parametrize("user_id", ["x" * (v.MAX_USER_ID_LENGTH + 1), "%00", "a%00b"])
def test_user_page_with_an_impossible_user_id_is_404(client, analyst, user_id):
    client.force_login(analyst)
    assert client.get(f"/users/{user_id}/").status_code == 404


def test_user_page_at_the_longest_user_id_works(client, analyst, store):
    # A user id nobody used is a "no such user" 404 (the users list's suggestions page), so the
    # longest id gets a session first: it must be stored, listed and shown in full.
    user_id = "x" * v.MAX_USER_ID_LENGTH
    store.create_session(user_id=user_id, session_type="agent")
    client.force_login(analyst)
    response = client.get(f"/users/{user_id}/")
    assert response.status_code == 200 and user_id in response.content.decode()


def test_session_page_number_past_any_integer_is_clamped(client, analyst, store):
    session = store.create_session(session_type="agent")
    client.force_login(analyst)
    response = client.get(f"/sessions/{session.id}/?page=99999999999999999999")
    assert response.status_code == 200
    assert v.page_number("99999999999999999999") == v.MAX_EVENTS_PER_SESSION
    assert v.page_number("-3") == 1 and v.page_number("x") == 1


@pytest.fixture
def bearer(db):
    from sessions_app import apikeys

    _, secret = apikeys.create_api_key("hardening", ["read", "write"])
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/stats?user_id=%00",
        "/api/v1/user-summary?user_id=a%00",
        "/api/v1/sessions?user_id=%00",
    ],
)
def test_nul_in_a_user_id_query_parameter_is_422(client, bearer, url):
    response = client.get(url, **bearer)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "user_id"


# ---- 7: CSV formula injection -------------------------------------------------------------------


def test_csv_cells_that_spreadsheets_would_run_are_neutralised():
    from sessions_app import csvsafe

    for text in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"]:
        assert csvsafe.cell(text) == "'" + text
    assert (
        csvsafe.cell("plain") == "plain" and csvsafe.cell(-3) == -3 and csvsafe.cell(None) is None
    )


def test_history_csv_export_neutralises_user_content(client, make_user):
    import csv
    import io

    from django.utils import timezone

    now = timezone.now()
    Session.objects.create(
        user_id='=HYPERLINK("http://evil","x")',
        session_type="agent",
        status="completed",
        purpose="+cmd|' /C calc'!A0",
        tags=["-2+3", "@SUM(1)"],
        source="@source",
        device="=device",
        created_at=now,
        last_activity_at=now,
        expires_at=now,
        archived_at=now,
    )
    client.force_login(make_user("superuser"))
    response = client.get("/history/export.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1
    row = rows[0]
    assert row["user_id"] == '\'=HYPERLINK("http://evil","x")'
    assert row["purpose"].startswith("'+cmd")
    assert row["tags"] == "'-2+3 @SUM(1)"
    assert row["source"] == "'@source" and row["device"] == "'=device"
    for value in row.values():
        assert not value.startswith(csvsafe_prefixes())


def csvsafe_prefixes():
    from sessions_app import csvsafe

    return csvsafe.FORMULA_PREFIXES


def test_dict_writer_used_by_the_analytics_export_neutralises_rows():
    import io

    from sessions_app import csvsafe

    out = io.StringIO()
    writer = csvsafe.DictWriter(
        out, fieldnames=["day", "session_type", "cost"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerow({"day": "=cmd", "session_type": "-x", "cost": -1.5})
    assert out.getvalue() == "day,session_type,cost\n'=cmd,'-x,-1.5\n"


# ---- 12, 16 over REST and MCP -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"session_type":"agent","metadata":{"k":"\xed\xa0\x80"}}', "metadata"),
        (b'{"session_type":"agent","preferences":{"\xed\xb0\x80":1}}', "preferences"),
        (b'{"session_type":"agent","purpose":"\xed\xa0\x80"}', "purpose"),
        (b'{"session_type":"agent","purpose":"\\udc00"}', "purpose"),
    ],
)
def test_rest_raw_surrogates_are_422_naming_the_field(client, bearer, body, field):
    response = client.post("/api/v1/sessions", data=body, content_type="application/json", **bearer)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


def test_rest_deep_json_is_refused_at_input(client, bearer, store):
    body = {"session_type": "agent", "metadata": nested(900)}
    response = client.post(
        "/api/v1/sessions", data=json.dumps(body), content_type="application/json", **bearer
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "metadata" and "nested" in error["reason"]
    # Within the limit it is accepted (and the body's own level does not count).
    body["metadata"] = nested(v.MAX_JSON_DEPTH)
    response = client.post(
        "/api/v1/sessions", data=json.dumps(body), content_type="application/json", **bearer
    )
    assert response.status_code == 201
    session_id = response.json()["id"]
    for path in ("context", "results"):
        response = client.put(
            f"/api/v1/sessions/{session_id}/{path}",
            data=json.dumps({"key": "k", "value": nested(900)}),
            content_type="application/json",
            **bearer,
        )
        assert response.status_code == 422 and response.json()["error"]["field"] == "value"


def mcp_call(name: str, arguments: dict):
    from asgiref.sync import async_to_sync

    from sessions_app.mcp import tools

    return async_to_sync(tools.call_tool)(name, arguments)


def test_mcp_surrogates_and_deep_json_are_argument_errors(store):
    result = mcp_call("create-analysis-session", {"sessionType": "agent", "userId": "a\ud800"})
    assert result.is_error
    assert result.structured_content["error"]["field"] == "userId"
    assert result.structured_content["error"]["code"] == "invalid_argument"
    session = store.create_session(session_type="agent")
    result = mcp_call(
        "track-query",
        {"sessionId": str(session.id), "queryType": "q", "parameters": nested(900)},
    )
    assert result.is_error
    assert result.structured_content["error"]["field"] == "parameters"
    assert "nested" in result.structured_content["error"]["reason"]
