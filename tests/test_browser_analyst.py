"""The analyst features in headless Chromium: trace waterfall and jump-to-error, users list
sort and search, comparison deltas, drill-down to History, saving and reopening a view.

Screenshots of each page at 1440 px and 390 px go to test-artifacts/screenshots/analyst-*.png.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app.metrics import compute_daily_metrics
from tests.conftest import ARTIFACTS_DIR, login
from tests.factories import archived_session, archived_sessions

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {"desktop": 1440, "phone": 390}


def shoot(browser, live_server, user, path: str, name: str, top: str = "") -> None:
    """Screenshots of `path` at every width in WIDTHS (a fresh logged-in context each); with
    `top`, also the first screen scrolled to that element's id."""
    folder = ARTIFACTS_DIR / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS.values():
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        try:
            login(page, live_server, user)
            page.goto(f"{live_server.url}{path}")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(folder / f"analyst-{name}-{width}.png"), full_page=True)
            if top:
                page.locator(f"#{top}").scroll_into_view_if_needed()
                page.screenshot(path=str(folder / f"analyst-{name}-{width}-screen.png"))
        finally:
            context.close()


@pytest.fixture
def week():
    """Two weeks of archived sessions for four users, rolled up; this week busier."""
    now = timezone.now()
    types = ["equity", "crypto", "macro"]
    specs = []
    for i in range(24):
        days_ago = 1 + i % 5 if i < 16 else 8 + i % 5
        specs.append(
            {
                "created_at": now - timedelta(days=days_ago, hours=i % 4),
                "user_id": ["alice", "Alfred", "bob", "carol"][i % 4],
                "session_type": types[i % 3],
                "status": ["completed", "completed", "failed", "abandoned"][i % 4],
                "assets": [["AAPL"], ["BTC"], ["SPY"]][i % 3],
                "tags": [["earnings"], ["defi"], ["rates"]][i % 3],
                "purpose": f"Research {i}",
                "queries": [{"query_type": "price", "error": "x" if i % 4 == 2 else ""}],
                "tool_calls": [
                    {
                        "tokens_in": 100 * (i % 4 + 1),
                        "tokens_out": 40,
                        "cost": 0.5 if i % 4 == 1 else 0.01,
                    }
                ],
            }
        )
    sessions = archived_sessions(specs)
    today = timezone.localdate()
    compute_daily_metrics(today - timedelta(days=15), today - timedelta(days=1))
    return sessions


@pytest.fixture
def long_trace():
    """An agent session of 240 events: turns of prompt, tool call + result, answer; two errors
    far apart (#21 and #201)."""
    start = timezone.now() - timedelta(hours=2)
    return archived_session(
        created_at=start,
        duration_seconds=600,
        session_type="agent",
        queries=[
            {"query_type": "price", "error": "timeout" if i in (21, 201) else ""}
            for i in range(240)
        ],
    )


def test_trace_waterfall_kind_filter_and_jump_to_errors(
    browser, page, live_server, analyst, long_trace
):
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/sessions/{long_trace.id}/")
    bars = page.locator("#trace-list svg.wf rect.wf-bar")
    assert bars.count() == 100  # the first page; the rest loads as it scrolls
    # Bars sit on one shared axis: later events start further right.
    x_first = float(page.locator("#event-0 rect.wf-bar").get_attribute("x"))
    x_late = float(page.locator("#event-99 rect.wf-bar").get_attribute("x"))
    assert x_late > x_first
    assert page.locator(".wf-axis span").count() == 5

    # The error counter links to the first error.
    page.click("#error-count")
    page.wait_for_url("**/?upto=21#event-21")
    assert page.locator("#event-21").is_visible()

    page.goto(f"{live_server.url}/sessions/{long_trace.id}/")
    page.click("#next-error")
    page.wait_for_selector("#event-21.jumped")
    # The next error is not loaded yet: jumping fetches the pages up to it.
    page.click("#next-error")
    page.wait_for_selector("#event-201.jumped")
    assert page.evaluate(
        "() => { const r = document.getElementById('event-201').getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= innerHeight; }"
    )

    # Filters by kind hide events client-side.
    page.uncheck("#trace-controls input[value=query]")
    assert not page.locator("#event-0").is_visible()
    page.check("#trace-controls input[value=query]")
    page.check("#trace-controls input[name=errors_only]")
    assert not page.locator("#event-0").is_visible() and page.locator("#event-21").is_visible()
    page.uncheck("#trace-controls input[name=errors_only]")

    # Scrolling to the end loads the remaining pages.
    for _ in range(5):
        page.locator("#trace-list > li").last.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
    page.wait_for_selector("#event-239")
    assert page.locator("#trace-more").count() == 0
    shoot(browser, live_server, analyst, f"/sessions/{long_trace.id}/", "trace")


def test_agent_trace_groups_turns_and_tool_calls(browser, page, live_server, analyst, store):
    """A live agent session: each tool call sits with its result inside the user's turn."""
    from sessions_app.store import QueryRecord

    session = store.create_session(assets=["NVDA"], session_type="agent", user_id="alice")
    for turn in range(3):
        store.add_message(session.id, role="user", content=f"Question {turn}: how is NVDA doing?")
        for call in range(2):
            invocation = f"call_{turn}{call}"
            store.record_tool_call(
                session.id,
                tool_name=["market_data", "news_search"][call],
                invocation_id=invocation,
                duration_ms=400.0 + 300 * call,
                tokens_in=500,
                tokens_out=120,
                cost=0.0031,
                error="rate limited" if (turn, call) == (1, 1) else "",
            )
            store.add_message(
                session.id,
                role="tool",
                content="{...}",
                tool_name="market_data",
                invocation_id=invocation,
            )
        store.add_query(session.id, QueryRecord(query_type="price", execution_time_ms=35.0))
        store.add_message(session.id, role="assistant", content=f"Answer {turn}.")
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/sessions/{session.id}/")
    groups = page.locator("#trace-list li.step-group")
    assert groups.count() == 6
    first = groups.first
    assert first.locator("li.event").count() == 2
    assert "500 → 120 tok · $0.0031" in first.inner_text()
    assert page.locator("#event-0.turn-start").count() == 1
    assert page.locator("#error-count").inner_text() == "1 error"
    page.click("#next-error")
    page.wait_for_selector(".event-error.jumped")
    shoot(browser, live_server, analyst, f"/sessions/{session.id}/", "trace-agent", top="trace")


def test_users_list_sorts_and_searches_as_you_type(browser, page, live_server, analyst, week):
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/users/")
    assert page.locator("#users-table tbody tr").count() == 4
    page.click("#users-table th a[data-sort=cost]")
    page.wait_for_url("**/users/?*sort=-cost*")
    page.wait_for_function(
        "() => document.querySelector('#users-table tbody tr').dataset.user === 'Alfred'"
    )
    page.fill("#id_q", "AL")
    page.wait_for_function("() => new URLSearchParams(location.search).get('q') === 'AL'")
    page.wait_for_function("() => document.querySelectorAll('#users-table tbody tr').length === 2")
    rows = page.locator("#users-table tbody tr")
    assert [rows.nth(i).get_attribute("data-user") for i in range(2)] == ["Alfred", "alice"]
    page.fill("#id_q", "alx")
    page.wait_for_selector("#users-empty")
    assert "Did you mean" in page.inner_text("#users-empty")
    shoot(browser, live_server, analyst, "/users/?sort=-cost", "users")
    shoot(browser, live_server, analyst, "/users/nobody-here/", "user-unknown")


def test_overview_kpis_show_changes_and_a_bar_click_opens_history(
    browser, page, live_server, analyst, week
):
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/?range=7")
    sessions_delta = page.locator(".kpi-delta[data-kpi=sessions] .delta")
    assert "▲" in sessions_delta.inner_text()  # 16 this week against 8 the week before
    assert "100.0 %" in sessions_delta.inner_text()
    assert "pp" in page.inner_text(".kpi-delta[data-kpi=completion]")

    page.check("#id_compare")
    page.wait_for_url("**/?*compare=on*")
    page.wait_for_function(
        "() => Chart.getChart(document.getElementById('chart-sessions'))"
        ".data.datasets.some(d => d.previous)"
    )
    # Click the first type's bar on the last day that has one.
    point = page.evaluate(
        """() => {
          const chart = Chart.getChart(document.getElementById('chart-sessions'));
          const data = chart.data.datasets[0].data;
          let i = data.length - 1; while (i >= 0 && !data[i]) i--;
          const bar = chart.getDatasetMeta(0).data[i];
          const box = chart.canvas.getBoundingClientRect();
          return {x: box.left + bar.x, y: box.top + (bar.y + bar.base) / 2,
                  day: chart.data.labels[i], n: data[i],
                  type: chart.data.datasets[0].label.toLowerCase()};
        }"""
    )
    # Tooltips: units on every line, and the day's total under a stacked bar.
    tips = page.evaluate(
        """() => {
          const chart = Chart.getChart(document.getElementById('chart-sessions'));
          const cb = chart.options.plugins.tooltip.callbacks;
          const data = chart.data.datasets[0].data;
          let i = data.length - 1; while (i >= 0 && !data[i]) i--;
          const items = chart.data.datasets.map((d, k) => ({
            chart, dataIndex: i, datasetIndex: k, dataset: d, label: chart.data.labels[i],
            raw: d.data[i], parsed: {y: d.data[i]}}));
          const total = chart.data.datasets.filter(d => !d.previous)
            .reduce((sum, d) => sum + (d.data[i] || 0), 0);
          const assets = Chart.getChart(document.getElementById('chart-assets'));
          const a = assets.data.datasets[0];
          return {footer: cb.footer(items), label: cb.label(items[0]), total,
                  asset: assets.options.plugins.tooltip.callbacks.label(
                    {chart: assets, dataIndex: 0, dataset: a, label: assets.data.labels[0],
                     raw: a.data[0], parsed: {x: a.data[0]}})};
        }"""
    )
    assert tips["footer"] == f"Total: {tips['total']} sessions"
    assert tips["label"].endswith(" sessions") and tips["asset"].endswith(" sessions")
    shoot(browser, live_server, analyst, "/?range=7&compare=on", "overview-compare")
    page.mouse.click(point["x"], point["y"])
    page.wait_for_url(f"**/history/?start={point['day']}&end={point['day']}&type={point['type']}")
    assert page.locator("table.sessions tbody tr").count() == point["n"]
    assert page.input_value("#id_start") == point["day"]


def test_save_a_view_then_reopen_it_from_the_menu(browser, page, live_server, analyst, week):
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/history/")
    page.select_option("#id_type", "crypto")
    page.wait_for_url("**/history/?*type=crypto*")
    page.click("#saved-views summary")
    page.fill("#save-view-form input[name=name]", "Crypto only")
    page.click("#save-view-form button[type=submit]")
    page.wait_for_url("**/history/?*type=crypto*")
    assert "Saved the view" in page.inner_text("main")

    page.goto(f"{live_server.url}/history/")
    count_all = page.locator("table.sessions tbody tr").count()
    page.click("#saved-views summary")
    page.click("#saved-views-list a:has-text('Crypto only')")
    page.wait_for_url("**/history/?*type=crypto*")
    assert page.locator("table.sessions tbody tr").count() == 8 < count_all
    assert page.input_value("#id_type") == "crypto"
    shoot(browser, live_server, analyst, "/views/", "saved-views")
    shoot(browser, live_server, analyst, "/history/?sort=-cost", "history")


# Elements of <main> reaching past the viewport's edges (tables scroll inside .table-wrap).
OUTSIDE = """() => {
  const out = [];
  document.querySelectorAll('main *').forEach(e => {
    const r = e.getBoundingClientRect();
    if ((r.right > innerWidth + 1 || r.left < -1) && !e.closest('.table-wrap')) {
      out.push(`${e.tagName}.${e.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
    }
  });
  return out;
}"""


def test_analyst_pages_and_the_open_views_menu_fit_a_phone(
    browser, live_server, analyst, week, long_trace
):
    context = browser.new_context(viewport={"width": 390, "height": 900})
    page = context.new_page()
    try:
        login(page, live_server, analyst)
        for path in (
            "/users/",
            "/users/nobody/",
            "/views/",
            "/history/",
            "/?range=7&compare=on",
            f"/sessions/{long_trace.id}/",
        ):
            page.goto(live_server.url + path)
            page.wait_for_load_state("networkidle")
            if page.locator("#saved-views summary").count():
                page.click("#saved-views summary")
            assert page.evaluate(OUTSIDE) == [], path
    finally:
        context.close()
