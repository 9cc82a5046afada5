"""The dashboard in headless Chromium: filters, timeline, charts, live refresh, policy edits.

Each test saves screenshots of the pages it visits under test-artifacts/screenshots/.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app.metrics import compute_daily_metrics
from sessions_app.policies import ensure_global_policy
from sessions_app.store import get_session_store
from tests.conftest import login
from tests.factories import archived_sessions, live_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Functions, not expressions: Playwright evals a bare expression, which the CSP forbids.
ROW_COUNT_IS = "(n) => document.querySelectorAll('table.sessions tbody tr').length === n"
CHARTS = ("sessions", "queries", "duration", "cache", "status", "assets", "tags")

# True when the canvas holds at least one painted pixel.
CANVAS_PAINTED = """(id) => {
  const canvas = document.getElementById(id);
  if (!canvas || !canvas.width || !canvas.height) return false;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) return true; }
  return false;
}"""


@pytest.fixture
def demo_data():
    """Thirty archived sessions over the past week (rolled up) in three types, with timelines."""
    now = timezone.now()
    types = ["equity", "crypto", "macro"]
    sessions = archived_sessions(
        {
            "created_at": now - timedelta(days=1 + i % 6, hours=i % 5),
            "user_id": f"analyst-{i % 4}",
            "session_type": types[i % 3],
            "status": ["completed", "completed", "abandoned", "failed", "expired"][i % 5],
            "duration_seconds": 90 + 45 * i,
            "assets": [["AAPL", "MSFT"], ["BTC", "ETH"], ["SPY"]][i % 3],
            "tags": [["earnings"], ["defi", "risk"], ["rates"]][i % 3],
            "purpose": f"Research note {i}",
            "queries": [
                {"query_type": qt, "cache_hit": j % 2 == 0, "result_summary": f"{qt} result {j}"}
                for j, qt in enumerate(["price", "news", "technical", "fundamentals"][: 1 + i % 4])
            ],
            "messages": [("user", f"Question {i}"), ("assistant", f"Answer {i}")],
            "tool_calls": [
                {"tool_name": "market_data", "tokens_in": 200, "tokens_out": 80, "cost": 0.004}
            ],
        }
        for i in range(30)
    )
    today = timezone.localdate()
    compute_daily_metrics(today - timedelta(days=8), today)
    return sessions


def test_history_filter_updates_url_and_rows_then_open_a_timeline(
    page, live_server, analyst, screenshot, demo_data
):
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/history/")
    assert page.locator("table.sessions tbody tr").count() == 30
    screenshot("history")

    page.select_option("#id_type", "crypto")
    page.wait_for_url("**/history/?*type=crypto*")
    page.wait_for_function(ROW_COUNT_IS, arg=10)
    assert "10 sessions match" in page.inner_text("#history-count")

    page.fill("#id_q", "note 4")
    page.wait_for_function("() => new URLSearchParams(location.search).get('q') === 'note 4'")
    page.wait_for_function(ROW_COUNT_IS, arg=1)
    screenshot("history-filtered")

    page.click("table.sessions tbody tr a.mono")
    page.wait_for_url("**/sessions/*/")
    timeline = page.locator("ol.timeline li.event")
    assert timeline.count() == 1 + 2 + 1  # session 4: one query, two messages, one tool call
    assert "price result 0" in page.inner_text("ol.timeline")
    assert "Question 4" in page.inner_text("ol.timeline")
    screenshot("session-detail")


def test_history_pages_without_javascript(browser, live_server, analyst, demo_data):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        login(page, live_server, analyst)
        page.goto(f"{live_server.url}/history/?per_page=10&sort=-duration")
        first = page.locator("tbody tr").first.get_attribute("data-session")
        page.click("a[rel=next]")
        assert "cursor=" in page.url and "sort=-duration" in page.url
        assert page.locator("tbody tr").count() == 10
        assert page.locator("tbody tr").first.get_attribute("data-session") != first
    finally:
        context.close()


def test_every_overview_chart_is_drawn(page, live_server, analyst, screenshot, demo_data):
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/?range=7")
    for chart in CHARTS:
        page.wait_for_function(CANVAS_PAINTED, arg=f"chart-{chart}")
    screenshot("overview")

    # A filter change swaps the partial, updates the URL, and the charts are drawn again.
    page.select_option("select[name=type]", "crypto")
    page.wait_for_url("**/?*type=crypto*")
    page.wait_for_function(
        "() => document.querySelector('#overview-body .period').textContent.includes('Crypto')"
    )
    for chart in CHARTS:
        page.wait_for_function(CANVAS_PAINTED, arg=f"chart-{chart}")
    screenshot("overview-crypto")


def test_live_page_picks_up_a_new_session(page, live_server, analyst, screenshot):
    live_session(user_id="early-bird", purpose="Already running")
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/live/")
    assert page.locator("#live-table tbody tr").count() == 1

    created = get_session_store().create_session(
        assets=["NVDA", "AMD"],
        session_type="comparative",
        user_id="newcomer",
        tags=["chips"],
        purpose="Compare GPU makers",
    )
    page.wait_for_selector(f"tr[data-session='{created.id}']", timeout=8000)
    assert page.inner_text("#live-total") == "2"
    screenshot("live")


def test_user_page(page, live_server, analyst, screenshot, demo_data):
    live_session(user_id="analyst-1", purpose="Still going")
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/users/")
    assert "analyst-1" in page.inner_text("main")  # listed as active now
    screenshot("users")
    page.fill("#id_q", "analyst-1")
    page.wait_for_function("() => document.querySelectorAll('#users-table tbody tr').length === 1")
    page.click("#users-table a:has-text('analyst-1')")
    page.wait_for_url("**/users/analyst-1/")
    assert page.locator("#user-sessions tbody tr").count() == 8
    assert "Still going" not in page.inner_text("#user-sessions")  # live ones listed apart
    screenshot("user")


def test_retention_admin_edits_a_policy_and_sees_it_on_operations(
    page, live_server, retention_admin, screenshot
):
    ensure_global_policy()
    login(page, live_server, retention_admin)
    page.goto(f"{live_server.url}/admin/sessions_app/retentionpolicy/add/")
    page.select_option("#id_session_type", "crypto")
    page.fill("#id_retention_days", "7")
    page.fill("#id_max_queries_per_session", "250")
    page.click("input[name=_save]")
    # 7 days is shorter than the global retention: the dry run asks first.
    assert "Crypto" in page.locator("#retention-preview").inner_text()
    page.click("input[type=submit][value^='Yes']")
    page.wait_for_url("**/admin/sessions_app/retentionpolicy/")

    page.goto(f"{live_server.url}/operations/")
    crypto = page.locator("tr[data-type=crypto]")
    assert "7 days" in crypto.inner_text()
    assert "250" in crypto.inner_text()
    assert "override" in crypto.inner_text()
    assert "7 days" not in page.locator("tr[data-type=equity]").inner_text()
    page.wait_for_selector("#health .health-item")  # the lazy health panel arrived
    assert page.locator("form[action$='/operations/run/metrics'] button").count() == 1
    screenshot("operations")


def test_alerts_page_shows_state_sparkline_and_silence(
    page, live_server, retention_admin, screenshot
):
    from sessions_app.alerts.models import AlertEvent, AlertRule

    rule = AlertRule.objects.create(
        name="Equity error rate",
        metric="error_rate",
        session_type="equity",
        threshold=20,
        state="firing",
        last_value=50.0,
        recent_values=[[i, v] for i, v in enumerate([5, 8, 12, 30, 45, 50])],
    )
    AlertEvent.objects.create(rule=rule, kind="fired", at=timezone.now(), value=50, threshold=20)
    login(page, live_server, retention_admin)
    page.goto(f"{live_server.url}/alerts/")
    row = page.locator(f"tr[data-rule='{rule.pk}']")
    assert "firing" in row.inner_text().lower()
    assert row.locator("svg.sparkline polyline").count() == 1
    screenshot("alerts")
    page.select_option(f"#silence-{rule.pk}", "4")
    row.locator("button").click()
    # The page's messages, not base.html's hidden request-error banner (also a .flash).
    flash = page.locator(".flash[role=status]")
    flash.first.wait_for()
    assert "Silenced" in flash.first.inner_text()
    assert "silenced until" in page.locator(f"tr[data-rule='{rule.pk}']").inner_text()
