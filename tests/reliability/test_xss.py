"""Hostile text in every field a client controls is shown escaped on every page, and a real
browser runs none of it; symbols with markup and oversized or malformed payloads are refused
with the field and the reason (Python, REST, MCP)."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from sessions_app import apikeys
from sessions_app.exceptions import InvalidInput
from sessions_app.metrics import compute_daily_metrics
from sessions_app.store import QueryRecord, get_session_store
from tests.conftest import login

SCRIPT = "<script>window.__xss=1</script>"
IMG = '"><img src=x onerror=window.__xss=1>'
SVG = "'><svg/onload=window.__xss=1>"
PAYLOADS = (SCRIPT, IMG, SVG)


def hostile_session(live: bool, user_id: str = SCRIPT):
    """A session with a payload in every free-text field; ended and archived unless `live`."""
    store = get_session_store()
    session = store.create_session(
        assets=["AAPL"],
        session_type="agent",
        user_id=user_id,
        tags=list(PAYLOADS),
        purpose=SCRIPT,  # first, so a truncated purpose still holds the whole payload
        source=SVG,
        device=IMG,
        metadata={"note": IMG},
        preferences={"theme": SCRIPT},
    )
    store.add_query(
        session.id,
        QueryRecord(
            query_type="search",
            parameters={"q": IMG, SCRIPT: SVG},
            result_summary=f"{SCRIPT} {IMG}",
            error=SVG,
        ),
    )
    store.add_message(session.id, role="user", content=f"{IMG} {SCRIPT}")
    store.add_message(session.id, role="tool", content=SVG, tool_name=SCRIPT, invocation_id=IMG)
    store.record_tool_call(session.id, tool_name=IMG, invocation_id=SCRIPT, error=SCRIPT)
    store.update_context(session.id, SCRIPT, {"html": IMG})
    store.store_intermediate_result(session.id, IMG, SVG)
    if not live:
        store.end_session(session.id, status="failed")
    return session


def rollup_today() -> None:
    """The overview's top tags come from the daily rollup (DailyMetric)."""
    today = timezone.localdate()
    compute_daily_metrics(today, today)


def assert_escaped(html: str, page: str, shown: bool = True) -> None:
    """No payload raw in `html`; when `shown`, the page holds one escaped."""
    for payload in PAYLOADS:
        assert payload not in html, f"raw payload {payload!r} on the {page} page"
    if shown:
        assert escape(SCRIPT) in html or escape(IMG) in html or "\\u003Cscript" in html, page


@pytest.mark.django_db
def test_hostile_text_is_escaped_on_every_page_and_partial(make_user):
    live = hostile_session(live=True, user_id=SCRIPT)
    archived = hostile_session(live=False, user_id=IMG)
    rollup_today()
    client = Client()
    client.force_login(make_user("superuser"))
    pages = {
        "live": reverse("dashboard:live"),
        "live detail": reverse("dashboard:session", args=[live.id]),
        "archived detail": reverse("dashboard:session", args=[archived.id]),
        "history": reverse("dashboard:history"),
        "history by tag": reverse("dashboard:history") + "?tag=" + SCRIPT,
        "user (live)": reverse("dashboard:user", args=[SCRIPT]),
        "user (archived)": reverse("dashboard:user", args=[IMG]),
        "overview": reverse("dashboard:overview"),
        "delete confirmation": reverse("dashboard:session_delete", args=[archived.id]),
        "admin sessions": reverse("admin:sessions_app_session_changelist"),
        "admin session": reverse("admin:sessions_app_session_change", args=[archived.id]),
    }
    for page, url in pages.items():
        for htmx in (False, True):
            headers = {"HX-Request": "true"} if htmx else {}
            response = client.get(url, headers=headers)
            assert response.status_code == 200, (page, htmx, response.status_code)
            # A partial may hold only part of the page (e.g. the user's archived list).
            assert_escaped(response.content.decode(), f"{page} (htmx={htmx})", shown=not htmx)

    # What the detail pages show, each field escaped (not dropped).
    detail = client.get(pages["archived detail"]).content.decode()
    for text in (SCRIPT, IMG, SVG, f"{IMG} {SCRIPT}"):
        assert escape(text) in detail
    # The overview's chart data is JSON inside json_script, with < and > escaped.
    overview = client.get(pages["overview"]).content.decode()
    assert "\\u003Cscript\\u003Ewindow.__xss=1\\u003C/script\\u003E" in overview


@pytest.mark.django_db
def test_symbols_with_markup_are_refused_everywhere():
    store = get_session_store()
    with pytest.raises(InvalidInput) as error:
        store.create_session(assets=["<script>"], session_type="equity")
    assert error.value.field == "assets"
    assert "not a symbol" in error.value.reason

    _, secret = apikeys.create_api_key("k", ["read", "write"])
    client = Client()
    for asset in ("<img src=x>", '"><b>', "A B", "'x'"):
        response = client.post(
            "/api/v1/sessions",
            {"session_type": "equity", "assets": [asset]},
            content_type="application/json",
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == 422, asset
        assert response.json()["error"]["field"].startswith("assets")

    from sessions_app.mcp import call_tool

    result = asyncio.run(
        call_tool("create-analysis-session", {"assets": ["<svg>"], "sessionType": "equity"})
    )
    assert result.is_error
    assert result.structured_content["error"]["field"].startswith("assets")


@pytest.mark.django_db
def test_oversized_and_malformed_payloads_are_refused_with_field_and_reason():
    """REST: 4xx naming the field; MCP: an error result naming the argument; nothing stored."""
    _, secret = apikeys.create_api_key("k", ["read", "write"])
    client = Client()
    auth = {"Authorization": f"Bearer {secret}"}

    def post(path, body=None, raw=None):
        data = raw if raw is not None else json.dumps(body)
        return client.post(f"/api/v1{path}", data, content_type="application/json", headers=auth)

    session = get_session_store().create_session(session_type="equity", user_id="big")
    sid = session.id
    cases = [
        ("/sessions", {"session_type": "equity", "purpose": "x" * 2001}, 422, "purpose"),
        ("/sessions", {"session_type": "equity", "tags": ["t"] * 21}, 422, "tags"),
        ("/sessions", {"session_type": "equity", "metadata": {"x": "y" * 40_000}}, 422, None),
        ("/sessions", {"session_type": "equity", "ttl_hours": -1}, 422, "ttl_hours"),
        ("/sessions", {"session_type": "equity", "ttl_hours": "24"}, 422, "ttl_hours"),
        ("/sessions", {"session_type": "equity", "user_id": "u" * 129}, 422, "user_id"),
        ("/sessions", [1, 2, 3], 422, None),
        (f"/sessions/{sid}/messages", {"role": "user", "content": "x" * 32_001}, 422, "content"),
        (f"/sessions/{sid}/messages", {"role": "hacker", "content": "x"}, 422, "role"),
        (f"/sessions/{sid}/queries", {"query_type": "<b>"}, 422, "query_type"),
        (f"/sessions/{sid}/queries", {"query_type": "p", "execution_time_ms": -5}, 422, None),
        (f"/sessions/{sid}/context", {"key": "", "value": 1}, 422, "key"),
    ]
    for path, body, status, field in cases:
        method = client.put if path.endswith("/context") else None
        if method:
            response = client.put(
                f"/api/v1{path}", json.dumps(body), content_type="application/json", headers=auth
            )
        else:
            response = post(path, body)
        assert response.status_code == status, (path, body, response.content[:200])
        error = response.json()["error"]
        assert error["reason"], (path, error)
        if field:
            assert error["field"] == field, (path, error)
    malformed = [
        ("{", 400, "malformed_json"),
        ('{"session_type": "equity", "purpose": "\\u0000"}', 422, None),
        ('{"session_type": "equity", "metadata": {"x": NaN}}', 422, None),
        ('{"session_type": "equity", "purpose": "\\ud800"}', 422, None),
        ("[" * 100_000, 400, "malformed_json"),
    ]
    for raw, status, code in malformed:
        response = post("/sessions", raw=raw)
        assert response.status_code == status, (raw[:40], response.content[:200])
        if code:
            assert response.json()["error"]["code"] == code
        assert response.json()["error"]["reason"]
    # None of it was stored: the session is as created and nobody else's session exists.
    fresh = get_session_store().get_session(sid)
    assert fresh.event_count == 0 and fresh.state.context == {}

    from sessions_app.mcp import call_tool

    for tool, arguments, argument in [
        ("create-analysis-session", {"sessionType": "equity", "tags": ["x" * 65]}, "tags"),
        ("create-analysis-session", {"sessionType": "stocks"}, "sessionType"),
        ("track-query", {"sessionId": str(sid), "queryType": "p", "resultSummary": "x" * 4001},
         "resultSummary"),
        ("add-message", {"sessionId": str(sid), "role": "user", "content": "x" * 32_001},
         "content"),
        ("extend-session", {"sessionId": "bad$id"}, "sessionId"),
        ("get-session-info", {"sessionId": str(sid), "extra": 1}, "extra"),
    ]:  # fmt: skip
        result = asyncio.run(call_tool(tool, arguments))
        assert result.is_error, tool
        error = result.structured_content["error"]
        assert error["field"].startswith(argument), (tool, error)
        assert error["reason"]
    assert get_session_store().get_session(sid).event_count == 0


@pytest.mark.browser
@pytest.mark.slow
def test_browser_runs_no_injected_script_and_shows_the_text(
    browser, page, live_server, make_user, transactional_db
):
    live = hostile_session(live=True, user_id=SCRIPT)
    archived = hostile_session(live=False, user_id=IMG)
    rollup_today()
    login(page, live_server, make_user("superuser"))
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    urls = {
        "live": reverse("dashboard:live"),
        "live detail": reverse("dashboard:session", args=[live.id]),
        "archived detail": reverse("dashboard:session", args=[archived.id]),
        "history": reverse("dashboard:history"),
        "user": reverse("dashboard:user", args=[SCRIPT]),
        "overview": reverse("dashboard:overview"),
        "admin session": reverse("admin:sessions_app_session_change", args=[archived.id]),
    }
    for name, url in urls.items():
        page.goto(live_server.url + url)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("typeof window.__xss") == "undefined", name
        text = page.inner_text("body")
        if name != "overview":
            assert SCRIPT in text, name  # shown as text, not run, not dropped
    detail_text = page.goto(live_server.url + urls["archived detail"]) and page.inner_text("body")
    for payload in PAYLOADS:
        assert payload in detail_text
    # Chart labels are data: the tag chart's config parses back to the payload.
    page.goto(live_server.url + urls["overview"])
    labels = page.evaluate(
        "JSON.parse(document.getElementById('chart-tags-config').textContent).data.labels"
    )
    assert SCRIPT in labels
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert dialogs == []
