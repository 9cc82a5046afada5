"""Phone layout, accessibility, error pages and HTMX failure handling in headless Chromium.

Saves a screenshot of every page at 1440 px and 390 px under test-artifacts/screenshots/
(<page>-1440.png, <page>-390.png).
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app.metrics import compute_daily_metrics
from sessions_app.policies import ensure_global_policy
from sessions_app.schedules import sync_periodic_tasks
from tests.conftest import ARTIFACTS_DIR, login
from tests.factories import archived_sessions, live_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = (1440, 390)
PHONE = 390

# Lowest contrast ratio of visible text against its effective background (WCAG formula).
MIN_CONTRAST = """() => {
  function rgb(s) { const m = s.match(/[\\d.]+/g); return m ? m.map(Number) : [0, 0, 0, 0]; }
  function lum(c) {
    const v = c.slice(0, 3).map(x => {
      x /= 255;
      return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
  }
  function background(el) {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0.9) return c;
    }
    return [255, 255, 255];
  }
  let worst = {ratio: 99, text: ""};
  document.querySelectorAll("body *").forEach(el => {
    const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest("[hidden], canvas, pre.json, .skip-link, [aria-hidden=true]")) return;
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (!box.width || !box.height || style.visibility === "hidden" || style.opacity === "0") return;
    const a = lum(rgb(style.color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < worst.ratio) {
      worst = {ratio: ratio, text: el.textContent.trim().slice(0, 40), color: style.color};
    }
  });
  return worst;
}"""


@pytest.fixture
def data():
    """Archived sessions (rolled up), a live one, jobs and schedules: every page has content."""
    now = timezone.now()
    sessions = archived_sessions(
        {
            "created_at": now - timedelta(days=1 + i % 5, hours=i % 7),
            "user_id": f"analyst-{i % 3}",
            "session_type": ["equity", "agent", "macro"][i % 3],
            "status": ["completed", "abandoned", "failed"][i % 3],
            "duration_seconds": 120 + 60 * i,
            "assets": [["AAPL", "MSFT", "NVDA", "GOOGL", "AMZN"], ["BTC"], ["SPY"]][i % 3],
            "tags": [["earnings", "quarterly-review"], ["agent"], ["rates"]][i % 3],
            "purpose": f"A fairly long research purpose for session number {i} to test wrapping",
            "queries": [{"query_type": "price", "result_summary": "ok"}] * (1 + i % 3),
            "messages": [("user", "Question"), ("assistant", "Answer " * 40)],
            "tool_calls": [{"tool_name": "market_data", "tokens_in": 250000, "cost": 1.25}],
        }
        for i in range(12)
    )
    today = timezone.localdate()
    compute_daily_metrics(today - timedelta(days=7), today)
    ensure_global_policy()
    sync_periodic_tasks()
    live = live_session(user_id="analyst-1", purpose="Still going")
    return {"archived": sessions[0], "live": live}


@pytest.fixture
def csp_violations(page):
    """Console messages about the Content-Security-Policy: there must be none."""
    found = []
    page.on(
        "console",
        lambda msg: found.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return found


def shoot(page, name: str, width: int) -> None:
    folder = ARTIFACTS_DIR / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True)


def overflow(page) -> int:
    """How many pixels the page is wider than the viewport (0 when nothing sticks out)."""
    return page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    )


def test_every_page_fits_a_phone_and_is_screenshotted(
    page, live_server, retention_admin, data, csp_violations
):
    login(page, live_server, retention_admin)
    pages = {
        "overview": "/",
        "history": "/history/",
        "live": "/live/",
        "users": "/users/",
        "user": "/users/analyst-1/",
        "session-archived": f"/sessions/{data['archived'].id}/",
        "session-live": f"/sessions/{data['live'].id}/",
        "operations": "/operations/",
        "health": "/operations/health",
        "not-found": "/no/such/page/",
    }
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for name, path in pages.items():
            page.goto(live_server.url + path)
            page.wait_for_load_state("networkidle")
            if width == PHONE:
                assert overflow(page) <= 0, f"{name} is {overflow(page)} px wider than the phone"
            shoot(page, name, width)
    assert csp_violations == []


def test_login_and_403_pages_fit_a_phone(browser, live_server, make_user):
    for width in WIDTHS:
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        try:
            page.goto(f"{live_server.url}/accounts/login/")
            assert width != PHONE or overflow(page) <= 0
            shoot(page, "login", width)
            login(page, live_server, make_user("none"))
            page.wait_for_load_state("networkidle")
            assert "needs the Analysts role" in page.inner_text("main")
            assert page.locator("main form[action='/accounts/logout/'] button").is_visible()
            assert width != PHONE or overflow(page) <= 0
            shoot(page, "forbidden", width)
        finally:
            context.close()


def test_header_collapses_on_a_phone(page, live_server, analyst, data):
    page.set_viewport_size({"width": PHONE, "height": 800})
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/history/")
    toggle = page.locator(".menu-toggle")
    assert toggle.is_visible()
    assert not page.locator(".mainnav").is_visible()
    toggle.click()
    assert page.locator(".mainnav a[href='/live/']").is_visible()
    assert toggle.get_attribute("aria-expanded") == "true"
    shoot(page, "menu-open", PHONE)
    page.set_viewport_size({"width": 1000, "height": 800})
    assert not toggle.is_visible() and page.locator(".mainnav").is_visible()


def test_skip_link_and_focus_ring(page, live_server, analyst, data):
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/history/")
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    box = skip.bounding_box()
    assert box["y"] >= 0 and box["height"] > 0  # on screen while focused
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    page.keyboard.press("Tab")  # the next stop is inside main, not the header
    assert page.evaluate("!!document.activeElement.closest('main')")
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineWidth")
    assert float(ring.rstrip("px")) >= 2


@pytest.mark.parametrize(
    "path", ["/", "/history/", "/operations/", "/live/", "/users/", "/users/analyst-1/", "/nope/"]
)
def test_text_contrast_is_at_least_4_5_with_margin(page, live_server, retention_admin, data, path):
    login(page, live_server, retention_admin)
    page.goto(live_server.url + path)
    page.wait_for_load_state("networkidle")
    worst = page.evaluate(MIN_CONTRAST)
    assert worst["ratio"] >= 5.0, worst  # 4.5:1 (WCAG AA) with margin


def test_favicon(page, live_server, analyst):
    login(page, live_server, analyst)
    href = page.get_attribute("link[rel=icon]", "href")
    assert page.request.get(live_server.url + href).status == 200


def test_failed_htmx_swap_shows_a_banner_and_clears_stale_results(page, live_server, analyst, data):
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/history/")
    assert page.locator("table.sessions tbody tr").count() == 12
    assert not page.locator("#request-error").is_visible()

    def fail(route):
        if route.request.headers.get("hx-request"):
            route.fulfill(status=500, body="boom")
        else:
            route.continue_()

    page.route("**/history/?*", fail)
    page.select_option("#id_type", "macro")
    page.wait_for_selector("#request-error:not([hidden])")
    assert "500" in page.inner_text("#request-error")
    assert page.locator("table.sessions").count() == 0  # the old rows are gone
    assert page.locator("#history-results .stale-cleared").is_visible()
    shoot(page, "request-error", 1440)

    page.unroute("**/history/?*")
    page.select_option("#id_type", "equity")
    page.wait_for_selector("table.sessions tbody tr")
    assert not page.locator("#request-error").is_visible()


def test_run_now_updates_the_page_in_place(page, live_server, retention_admin, data):
    login(page, live_server, retention_admin)
    page.goto(f"{live_server.url}/operations/")
    page.evaluate("window.notReloaded = true")
    page.click("form[action$='/operations/run/metrics'] button")
    page.wait_for_selector("#operations-jobs .flash")
    assert "Queued" in page.inner_text("#operations-jobs")
    assert page.evaluate("window.notReloaded === true")  # swapped in, no reload
    assert page.url.endswith("/operations/")
    assert page.locator("tr[data-job=metrics] table.counts, tr[data-job=metrics]").count() >= 1


def test_admin_pages_run_under_the_csp(page, live_server, make_user, csp_violations):
    sync_periodic_tasks()
    ensure_global_policy()
    admin = make_user("superuser")
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", admin.get_username())
    page.fill("#id_password", "correct-horse-battery-staple")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    assert "FIML Sessions administration" in page.title()
    shoot(page, "admin", 1440)
    page.goto(f"{live_server.url}/admin/django_celery_beat/periodictask/add/")
    page.select_option("#id_crontab", index=1)
    assert "undefined" not in page.inner_text("form")
    page.goto(f"{live_server.url}/admin/django_celery_beat/periodictask/")
    page.click("#result_list tbody tr a >> nth=0")
    page.wait_for_selector(".field-crontab_translation, .field-interval")
    shoot(page, "admin-periodictask", 1440)
    page.goto(f"{live_server.url}/admin/sessions_app/retentionpolicy/add/")
    page.select_option("#id_session_type", "crypto")  # admin widgets' scripts still run
    assert csp_violations == []


def test_overview_custom_range_waits_for_both_dates(page, live_server, analyst, data):
    login(page, live_server, analyst)
    page.goto(f"{live_server.url}/")
    assert page.locator("select[name=range]").input_value() == "30"  # what the data shows
    requests = []
    page.on("request", lambda r: requests.append(r.url) if "range=" in r.url else None)
    page.select_option("select[name=range]", "custom")
    page.fill("input[name=start]", (timezone.localdate() - timedelta(days=3)).isoformat())
    page.wait_for_timeout(300)
    assert requests == [] and page.locator("#overview-body .flash-error").count() == 0
    page.fill("input[name=end]", timezone.localdate().isoformat())
    page.wait_for_url("**/?*range=custom*")
    page.wait_for_function("() => document.querySelector('#overview-body .period')")
    assert "(4 days)" in page.inner_text("#overview-body .period")
