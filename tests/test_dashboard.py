"""Dashboard pages: permissions, content, filters and their validation, pagination, exports,
session actions, Redis outages and query counts that do not grow with the page size."""

import csv
import io
import json
import uuid
from datetime import datetime, time, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from sessions_app.metrics import compute_daily_metrics
from sessions_app.models import JobRun, Session
from sessions_app.schedules import sync_periodic_tasks
from sessions_app.store import get_session_store
from tests.factories import archived_session, archived_sessions, live_session, redis_unavailable

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def local(day, hour, minute=0):
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


@pytest.fixture
def redis_down():
    with redis_unavailable():
        yield


@pytest.fixture
def admin_client(retention_admin):
    client = Client()
    client.force_login(retention_admin)
    return client


@pytest.fixture
def viewer_client(django_user_model):
    """A user who may view the dashboard but not export or manage (a client of its own)."""
    user = django_user_model.objects.create_user("viewer", password="x")
    user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def sample():
    """Twelve archived sessions over the last days, in two types, one with an XSS purpose."""
    today = timezone.localdate()
    specs = []
    for i in range(12):
        specs.append(
            {
                "created_at": local(today - timedelta(days=1 + i % 3), 8 + i),
                "user_id": f"user-{i % 3}",
                "session_type": "equity" if i % 2 else "crypto",
                "status": ["completed", "abandoned", "failed", "expired"][i % 4],
                "duration_seconds": 60 * (i + 1),
                "assets": ["AAPL", "MSFT"] if i % 2 else ["BTC"],
                "tags": ["earnings"] if i % 3 == 0 else ["risk"],
                "purpose": f"Quarterly review number {i}",
                "queries": [
                    {"query_type": "price", "cache_hit": True, "error": "boom" if i == 5 else ""}
                ]
                * (i % 5),
            }
        )
    sessions = archived_sessions(specs)
    compute_daily_metrics(today - timedelta(days=4), today - timedelta(days=1))
    return sessions


# ---- permissions --------------------------------------------------------------------------------


def page_urls(session_id):
    return [
        reverse("dashboard:overview"),
        reverse("dashboard:history"),
        reverse("dashboard:session", args=[session_id]),
        reverse("dashboard:live"),
        reverse("dashboard:users"),
        reverse("dashboard:user", args=["user-1"]),
        reverse("dashboard:operations"),
        reverse("dashboard:operations_health"),
    ]


def test_anonymous_users_are_sent_to_login(client, sample):
    for url in page_urls(sample[0].id):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_users_without_the_dashboard_permission_get_403(client, make_user, sample):
    client.force_login(make_user("none"))
    for url in page_urls(sample[0].id):
        assert client.get(url).status_code == 403, url


def test_analysts_see_every_page(analyst_client, sample):
    for url in page_urls(sample[0].id):
        assert analyst_client.get(url).status_code == 200, url


def test_exports_need_the_export_permission(viewer_client, analyst_client, sample):
    urls = [
        reverse("dashboard:history_export", args=["csv"]),
        reverse("dashboard:history_export", args=["json"]),
        reverse("dashboard:export_metrics", args=["csv"]),
    ]
    for url in urls:
        assert viewer_client.get(url).status_code == 403, url
        assert analyst_client.get(url).status_code == 200, url


def test_session_actions_need_manage_permission(analyst_client, sample):
    session = live_session()
    for name in ("session_extend", "session_end", "session_archive", "session_delete"):
        url = reverse(f"dashboard:{name}", args=[session.id])
        assert analyst_client.post(url, {"hours": 1, "status": "completed"}).status_code == 403
    assert get_session_store().get_session(session.id).status == "active"


def test_posts_need_a_csrf_token(retention_admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(retention_admin)
    session = live_session()
    response = client.post(
        reverse("dashboard:session_end", args=[session.id]), {"status": "failed"}
    )
    assert response.status_code == 403
    assert get_session_store().get_session(session.id).status == "active"


# ---- overview -----------------------------------------------------------------------------------


def test_overview_shows_kpis_and_chart_configs(analyst_client, sample):
    live_session()
    response = analyst_client.get(reverse("dashboard:overview"), {"range": "7"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Live now" in body
    for chart in ("sessions", "queries", "duration", "cache", "status", "assets", "tags"):
        assert f'id="chart-{chart}-config"' in body
    stats = response.context["stats"]
    assert stats["archived_sessions"] == 12
    assert stats["active_sessions"] == 1
    datasets = response.context["charts"]["sessions"]["data"]["datasets"]
    assert {d["label"] for d in datasets} == {"Equity", "Crypto"}
    assert sum(sum(d["data"]) for d in datasets) == 12


def test_overview_type_filter_and_htmx_partial(analyst_client, sample):
    response = analyst_client.get(reverse("dashboard:overview"), {"type": "crypto"}, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body and 'id="overview-body"' in body
    assert response.context["stats"]["archived_sessions"] == 6
    assert "HX-Request" in response["Vary"]


def test_overview_custom_range(analyst_client, sample):
    today = timezone.localdate()
    day = today - timedelta(days=1)
    response = analyst_client.get(
        reverse("dashboard:overview"), {"range": "custom", "start": day, "end": day}
    )
    assert response.status_code == 200
    assert response.context["stats"]["period"]["days"] == 1
    assert response.context["stats"]["archived_sessions"] == 4


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"range": "365"}, "Period: Select a valid choice"),
        ({"range": "custom"}, "From: Pick a start date"),
        ({"range": "custom", "start": "2025-02-10", "end": "2025-02-01"}, "on or before"),
        (
            {"range": "custom", "start": "yesterday", "end": "2025-02-01"},
            "From: Enter a valid date",
        ),
        ({"type": "stocks"}, "Type: Select a valid choice"),
    ],
)
def test_overview_bad_filters_get_a_clear_400(analyst_client, sample, params, message):
    response = analyst_client.get(reverse("dashboard:overview"), params)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_overview_empty_state(analyst_client):
    response = analyst_client.get(reverse("dashboard:overview"))
    assert response.status_code == 200
    assert "No sessions in this period" in response.content.decode()


def test_overview_metrics_export(analyst_client, sample):
    response = analyst_client.get(reverse("dashboard:export_metrics", args=["csv"]), {"range": "7"})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert sum(int(r["sessions_started"]) for r in rows) == 12
    assert response["Content-Disposition"].startswith("attachment")


def test_overview_reads_rollups_with_fixed_queries(analyst_client, sample):
    # rollup coverage + stats + coverage + series, whatever the period length
    with CaptureQueriesContext(connection) as short:
        analyst_client.get(reverse("dashboard:overview"), {"range": "7"})
    with CaptureQueriesContext(connection) as long:
        analyst_client.get(reverse("dashboard:overview"), {"range": "90"})
    assert len(short) == len(long)
    assert not any(
        "count(*)" in q["sql"].lower()
        and "sessions_app_session" in q["sql"]
        and "where" not in q["sql"].lower()
        for q in long.captured_queries
    )


# ---- history ------------------------------------------------------------------------------------


def history(client, **params):
    return client.get(reverse("dashboard:history"), params)


def ids(response):
    return [str(row["id"]) for row in response.context["page"].rows]


def test_history_lists_newest_first(analyst_client, sample):
    response = history(analyst_client)
    assert response.status_code == 200
    expected = [str(s.id) for s in sorted(sample, key=lambda s: (s.created_at, s.id), reverse=True)]
    assert ids(response) == expected
    assert "12 sessions" in response.content.decode()


@pytest.mark.parametrize(
    ("params", "predicate"),
    [
        ({"user": "user-1"}, lambda s: s.user_id == "user-1"),
        ({"type": "equity"}, lambda s: s.session_type == "equity"),
        ({"status": "abandoned"}, lambda s: s.status == "abandoned"),
        ({"tag": "earnings"}, lambda s: "earnings" in s.tags),
        ({"asset": "btc"}, lambda s: "BTC" in s.assets),
        ({"q": "review 7"}, lambda s: s.purpose.endswith(" 7")),
        ({"q": "quarter"}, lambda s: True),  # prefix match on words
        ({"has_errors": "yes"}, lambda s: s.error_count > 0),
        ({"has_errors": "no"}, lambda s: s.error_count == 0),
        ({"min_queries": "3"}, lambda s: s.query_count >= 3),
        (
            {"type": "crypto", "status": "completed"},
            lambda s: s.session_type == "crypto" and s.status == "completed",
        ),
    ],
)
def test_history_filters(analyst_client, sample, params, predicate):
    response = history(analyst_client, **params)
    assert response.status_code == 200
    assert sorted(ids(response)) == sorted(str(s.id) for s in sample if predicate(s))


def test_history_text_search_with_many_matches_uses_the_sorted_walk(
    analyst_client, sample, monkeypatch
):
    # Past TEXT_CANDIDATES matches the page comes from walking the sort index, not the ids.
    monkeypatch.setattr("sessions_app.history.TEXT_CANDIDATES", 3)
    response = history(analyst_client, q="quarterly", per_page=10)
    expected = [str(s.id) for s in sorted(sample, key=lambda s: (s.created_at, s.id), reverse=True)]
    assert ids(response) == expected[:10]
    assert response.context["count_exact"] is False
    second = history(
        analyst_client, q="quarterly", per_page=10, cursor=response.context["page"].next_cursor
    )
    assert ids(second) == expected[10:]


def test_history_date_range(analyst_client, sample):
    day = timezone.localdate() - timedelta(days=2)
    response = history(analyst_client, start=day, end=day)
    assert sorted(ids(response)) == sorted(
        str(s.id) for s in sample if timezone.localtime(s.created_at).date() == day
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"type": "stocks"}, "Type: Select a valid choice"),
        ({"status": "active"}, "Status: Select a valid choice"),
        ({"min_queries": "lots"}, "Min queries: Enter a whole number"),
        ({"min_queries": "-1"}, "Min queries: Ensure this value is greater than or equal to 0"),
        ({"start": "2025-13-01"}, "From: Enter a valid date"),
        ({"start": "2025-02-10", "end": "2025-02-01"}, "on or before the end date"),
        ({"sort": "price"}, "Select a valid choice"),
        ({"per_page": "1000"}, "Select a valid choice"),
        ({"cursor": "garbage"}, "page link is out of date"),
        ({"q": "!!!"}, "Purpose contains: Type at least one letter"),
        ({"user": "x" * 200}, "User: Ensure this value has at most 128 characters"),
    ],
)
def test_history_bad_filters_get_a_clear_400(analyst_client, sample, params, message):
    response = history(analyst_client, **params)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert "page" not in response.context


def test_history_keyset_pages_cover_everything_once(analyst_client, sample):
    expected = [str(s.id) for s in sorted(sample, key=lambda s: (s.created_at, s.id), reverse=True)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"per_page": 10} | ({"cursor": cursor} if cursor else {})
        page = history(analyst_client, **params).context["page"]
        seen += [str(r["id"]) for r in page.rows]
        pages += 1
        cursor = page.next_cursor
        if not cursor:
            break
    assert (seen, pages) == (expected, 2)
    # And back again from the second page.
    second = history(
        analyst_client,
        per_page=10,
        cursor=history(analyst_client, per_page=10).context["page"].next_cursor,
    ).context["page"]
    back = history(analyst_client, per_page=10, cursor=second.prev_cursor).context["page"]
    assert [str(r["id"]) for r in back.rows] == expected[:10]
    assert back.prev_cursor is None


@pytest.mark.parametrize(
    "sort", ["duration", "-duration", "queries", "-queries", "errors", "created"]
)
def test_history_sorts_and_pages_by_any_column(analyst_client, sample, sort):
    column = {
        "duration": "duration_seconds",
        "queries": "query_count",
        "errors": "error_count",
        "created": "created_at",
    }[sort.lstrip("-")]
    expected = [
        str(s.id)
        for s in sorted(
            sample, key=lambda s: (getattr(s, column), s.id), reverse=sort.startswith("-")
        )
    ]
    first = history(analyst_client, sort=sort, per_page=10)
    second = history(
        analyst_client, sort=sort, per_page=10, cursor=first.context["page"].next_cursor
    )
    assert ids(first) + ids(second) == expected
    # A sort link keeps the filters and drops the cursor.
    filtered = history(analyst_client, sort=sort, type="equity").content.decode()
    assert "type=equity" in filtered


def test_history_links_work_without_javascript(analyst_client, sample):
    body = history(analyst_client, per_page=10, type="").content.decode()
    assert 'rel="next"' in body and 'href="?' in body and "cursor=" in body


def test_history_htmx_returns_the_results_partial(analyst_client, sample):
    response = analyst_client.get(reverse("dashboard:history"), {"type": "equity"}, **HTMX)
    body = response.content.decode()
    assert "<html" not in body and 'id="history-results"' in body


def test_history_escapes_user_content(analyst_client):
    archived_session(
        purpose="<script>alert('x')</script>", tags=["<b>bold</b>"], user_id="<i>u</i>"
    )
    body = history(analyst_client).content.decode()
    assert "<script>alert" not in body and "&lt;script&gt;" in body
    assert "<b>bold</b>" not in body and "<i>u</i>" not in body


def test_history_query_count_does_not_grow_with_page_size(analyst_client):
    archived_sessions({"created_at": timezone.now() - timedelta(minutes=i + 5)} for i in range(120))
    with CaptureQueriesContext(connection) as small:
        history(analyst_client, per_page=10)
    with CaptureQueriesContext(connection) as big:
        response = history(analyst_client, per_page=100)
    assert len(response.context["page"].rows) == 100
    assert len(small) == len(big)


def test_history_export_streams_the_filtered_set(analyst_client, sample):
    response = analyst_client.get(
        reverse("dashboard:history_export", args=["csv"]), {"type": "equity", "per_page": 10}
    )
    assert response.status_code == 200 and response.streaming
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    equity = [s for s in sample if s.session_type == "equity"]
    assert len(rows) == len(equity) == 6  # the whole filtered set, not one page
    assert {r["id"] for r in rows} == {str(s.id) for s in equity}
    assert rows[0]["assets"] == "AAPL MSFT"

    response = analyst_client.get(
        reverse("dashboard:history_export", args=["json"]), {"status": "failed", "sort": "duration"}
    )
    data = json.loads(b"".join(response.streaming_content))
    failed = sorted((s for s in sample if s.status == "failed"), key=lambda s: s.duration_seconds)
    assert [row["id"] for row in data] == [str(s.id) for s in failed]
    assert data[0]["assets"] == failed[0].assets


def test_history_export_rejects_bad_filters(analyst_client, sample):
    response = analyst_client.get(reverse("dashboard:history_export", args=["csv"]), {"type": "x"})
    assert response.status_code == 400
    assert "Type" in response.content.decode()


# ---- session detail -----------------------------------------------------------------------------


def test_archived_session_detail_with_timeline(analyst_client):
    session = archived_session(
        purpose="<script>x</script>",
        context={"allocation": {"SPY": 0.6}, "note": "<img src=x>"},
        intermediate_results={"analysis_1": [1, 2]},
        queries=[{"query_type": "price", "result_summary": "AAPL: $175.43", "cache_hit": True}],
        messages=[("user", "What moved <b>AAPL</b>?"), ("assistant", "Earnings.")],
        tool_calls=[{"tool_name": "git_tool", "tokens_in": 120, "tokens_out": 40, "cost": 0.0012}],
    )
    response = analyst_client.get(reverse("dashboard:session", args=[session.id]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "AAPL: $175.43" in body and "git_tool" in body and "Earnings." in body
    assert "What moved &lt;b&gt;AAPL&lt;/b&gt;?" in body
    assert "<script>x</script>" not in body and "<img src=x>" not in body
    assert "&quot;SPY&quot;: 0.6" in body  # context shown as indented JSON, escaped
    assert "analysis_1" in body
    assert response.context["event_total"] == 4


def test_timeline_is_paginated(analyst_client):
    session = archived_session(queries=[{"query_type": f"q{i}"} for i in range(160)])
    url = reverse("dashboard:session", args=[session.id])
    first = analyst_client.get(url)
    steps = [step.event.seq for item in first.context["trace"].items for step in item.steps]
    assert steps == list(range(100))
    second = analyst_client.get(url, {"offset": 100}, **HTMX)
    steps = [step.event.seq for item in second.context["trace"].items for step in item.steps]
    assert steps == list(range(100, 160))
    assert "<html" not in second.content.decode()


def test_live_session_detail(analyst_client):
    session = live_session(
        purpose="Live one", queries=[{"query_type": "news", "result_summary": "Headline"}]
    )
    get_session_store().update_context(session.id, "watch", ["AAPL"])
    response = analyst_client.get(reverse("dashboard:session", args=[session.id]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "live" in body and "Headline" in body and "watch" in body


def test_a_caller_chosen_id_has_a_detail_page(analyst_client):
    archived_session(id="user@desk:42.a_b-c", queries=[{"query_type": "price"}])
    url = reverse("dashboard:session", args=["user@desk:42.a_b-c"])
    assert url.endswith("/sessions/user@desk:42.a_b-c/")
    response = analyst_client.get(url)
    assert response.status_code == 200
    assert "user@desk:42.a_b-c" in response.content.decode()


def test_unknown_session_is_404(analyst_client):
    assert analyst_client.get(reverse("dashboard:session", args=[uuid.uuid4()])).status_code == 404


def test_detail_without_redis_shows_the_archived_copy(analyst_client, redis_down):
    session = archived_session(queries=[{"query_type": "price", "result_summary": "Close 101"}])
    response = analyst_client.get(reverse("dashboard:session", args=[session.id]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Live data unavailable" in body and "Close 101" in body


def test_detail_of_a_live_session_without_redis_says_live_data_is_unavailable(
    analyst_client, store
):
    """Issue 11 #20: Redis down and the session not archived is a 503 that says why, not a 404."""
    session = store.create_session(session_type="equity", user_id="u-live")
    with redis_unavailable():
        response = analyst_client.get(reverse("dashboard:session", args=[session.id]))
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    body = response.content.decode()
    assert "Live data unavailable" in body and session.id in body
    assert "No live or archived session" not in body


def test_detail_query_count_is_fixed(analyst_client, django_assert_max_num_queries):
    small = archived_session(queries=[{"query_type": "price"}] * 2)
    big = archived_session(queries=[{"query_type": "price"}] * 60)
    with CaptureQueriesContext(connection) as a:
        analyst_client.get(reverse("dashboard:session", args=[small.id]))
    with CaptureQueriesContext(connection) as b:
        analyst_client.get(reverse("dashboard:session", args=[big.id]))
    assert len(a) == len(b)


# ---- actions ------------------------------------------------------------------------------------


def test_extend_end_archive_and_delete(admin_client):
    store = get_session_store()
    session = live_session(ttl_hours=2)
    url = reverse("dashboard:session_extend", args=[session.id])
    response = admin_client.post(url, {"hours": "3"})
    assert response.status_code == 302
    assert store.get_session(session.id).expires_at - session.expires_at >= timedelta(hours=3)

    response = admin_client.post(url, {"hours": "100000"}, follow=True)
    assert "Could not extend the session" in response.content.decode()

    response = admin_client.post(url, {"hours": "soon"}, follow=True)
    assert "Hours: Enter a number" in response.content.decode()

    admin_client.post(reverse("dashboard:session_end", args=[session.id]), {"status": "failed"})
    ended = store.get_session(session.id)
    assert ended.status == "failed"

    other = live_session()
    admin_client.post(reverse("dashboard:session_archive", args=[other.id]))
    assert Session.objects.filter(id=other.id).exists()

    confirm = admin_client.get(reverse("dashboard:session_delete", args=[other.id]))
    assert confirm.status_code == 200 and "cannot be undone" in confirm.content.decode()
    assert Session.objects.filter(id=other.id).exists()  # GET changes nothing
    response = admin_client.post(reverse("dashboard:session_delete", args=[other.id]))
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:history")
    assert not Session.objects.filter(id=other.id).exists()
    assert store.get_session(other.id) is None


def test_end_with_a_bad_status_changes_nothing(admin_client):
    session = live_session()
    response = admin_client.post(
        reverse("dashboard:session_end", args=[session.id]), {"status": "paused"}, follow=True
    )
    assert "Could not end the session" in response.content.decode()
    assert get_session_store().get_session(session.id).status == "active"


# ---- live ---------------------------------------------------------------------------------------


def test_live_page_lists_sessions_by_activity(analyst_client):
    older = live_session(user_id="early", purpose="first")
    newer = live_session(user_id="late", purpose="second", session_type="crypto")
    response = analyst_client.get(reverse("dashboard:live"))
    assert response.status_code == 200
    assert [s.id for s in response.context["sessions"]] == [newer.id, older.id]
    assert response.context["counts"]["total"] == 2
    assert dict(response.context["counts"]["by_type"])["Crypto"] == 1
    assert 'hx-trigger="every 3s"' in response.content.decode()
    partial = analyst_client.get(reverse("dashboard:live"), **HTMX).content.decode()
    assert partial.startswith('\n<section id="live-body"') or "<html" not in partial


def test_live_page_says_when_redis_is_down(analyst_client, redis_down):
    response = analyst_client.get(reverse("dashboard:live"))
    assert response.status_code == 200
    assert "Live data unavailable" in response.content.decode()


def test_overview_and_history_work_while_redis_is_down(analyst_client, sample, redis_down):
    overview = analyst_client.get(reverse("dashboard:overview"))
    assert overview.status_code == 200
    assert "Live data unavailable" in overview.content.decode()
    assert history(analyst_client).status_code == 200


# ---- users --------------------------------------------------------------------------------------


def test_user_page(analyst_client, sample):
    live_session(user_id="user-1")
    response = analyst_client.get(reverse("dashboard:user", args=["user-1"]))
    assert response.status_code == 200
    summary = response.context["summary"]
    assert summary["archived_sessions"] == 4
    assert summary["active_sessions"] == 1
    assert {str(r["id"]) for r in response.context["page"].rows} == {
        str(s.id) for s in sample if s.user_id == "user-1"
    }


def test_user_lookup_lists_users_active_now(analyst_client):
    live_session(user_id="busy")
    live_session(user_id="busy")
    live_session(user_id="quiet")
    response = analyst_client.get(reverse("dashboard:users"))
    assert response.context["active_users"] == [("busy", 2), ("quiet", 1)]
    assert reverse("dashboard:user", args=["busy"]) in response.content.decode()


def test_user_lookup_redirects_and_validates(analyst_client):
    response = analyst_client.get(reverse("dashboard:users"), {"user": " user-7 "})
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard:user", args=["user-7"])
    response = analyst_client.get(reverse("dashboard:users"), {"user": "   "})
    assert response.status_code == 200  # nothing to open: the users list
    assert "users" in response.context


# ---- operations ---------------------------------------------------------------------------------


def test_operations_shows_jobs_schedules_and_policy(analyst_client):
    sync_periodic_tasks()
    now = timezone.now()
    JobRun.objects.create(
        job="cleanup_expired_sessions",
        started_at=now - timedelta(minutes=5),
        finished_at=now,
        outcome="success",
        counts={"archived": 42},
        duration_ms=12.5,
    )
    JobRun.objects.create(
        job="generate_session_metrics", started_at=now, outcome="failed", error="disk full"
    )
    response = analyst_client.get(reverse("dashboard:operations"))
    assert response.status_code == 200
    body = response.content.decode()
    jobs = {row["short"]: row for row in response.context["jobs"]}
    assert jobs["cleanup"]["last_run"].counts == {"archived": 42}
    assert jobs["cleanup"]["next_run"] is not None
    assert jobs["metrics"]["last_failure"].error == "disk full"
    # Counts as a table; schedules in words, the raw cron on hover.
    assert '<th scope="row">Archived</th><td class="num">42</td>' in body and "disk full" in body
    assert "At 03:30 AM UTC" in body and 'title="30 3 * * * (m/h/dM/MY/d) UTC"' in body
    assert ">Every 60 minutes<" in body and ">Every 15 minutes<" in body
    assert 'hx-trigger="load"' in body  # health loads lazily
    assert "Run now" not in body  # analysts cannot run jobs
    assert [row["type"] for row in response.context["policies"]][:2] == ["equity", "crypto"]


def test_health_partial(analyst_client):
    response = analyst_client.get(reverse("dashboard:operations_health"), **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    for part in ("postgres", "redis", "worker", "beat"):
        assert f'data-part="{part}"' in body
    assert "<html" not in body


def test_run_now_queues_the_task(admin_client, analyst_client, settings):
    from fimlsessions.celery import app

    assert analyst_client.post(reverse("dashboard:run_job", args=["metrics"])).status_code == 403
    # Eager mode runs the task in-process, so the test sees its JobRun without a worker. Our
    # app must be Celery's current one (shared tasks follow it; another test's app may not be).
    app.set_current()
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        response = admin_client.post(reverse("dashboard:run_job", args=["metrics"]), follow=True)
    finally:
        app.conf.task_always_eager = previous
    assert "Queued" in response.content.decode()
    run = JobRun.objects.get(job="generate_session_metrics")
    assert run.outcome == "success"
    # Through HTMX, "Run now" swaps in the jobs panel with the message and the run.
    app.conf.task_always_eager = True
    try:
        response = admin_client.post(reverse("dashboard:run_job", args=["metrics"]), **HTMX)
    finally:
        app.conf.task_always_eager = previous
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert body.startswith("\n") or 'id="operations-jobs"' in body
    assert "Queued" in body and 'id="job-watch"' not in body  # eager: already recorded
    assert 'tr data-job="metrics"' in body
    assert admin_client.post(reverse("dashboard:run_job", args=["nope"])).status_code == 404
    assert admin_client.get(reverse("dashboard:run_job", args=["metrics"])).status_code == 405


# ---- readable numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "\u2014"),
        (0, "0s"),
        (4.25, "4.2s"),
        (42, "42s"),
        (185, "3m 5s"),
        (3600, "1h"),
        (7440, "2h 4m"),
        (180000, "2d 2h"),
    ],
)
def test_duration_filter(value, text):
    from sessions_app.templatetags.dashboard import duration

    assert duration(value) == text


def test_number_percent_money_and_when():
    from sessions_app.templatetags.dashboard import millis, money, number, percent, when

    # One compact format for every count: exact below 10,000, then three significant digits.
    assert number(9999) == "9,999"
    assert number(12_345) == "12.3k"
    assert number(999_999) == "1.00M"
    assert number(1_275_995) == "1.28M"
    assert number(11_800_000) == "11.8M"
    assert percent(0.4286) == "42.9 %"
    # One currency format: two decimals; non-zero amounts under a cent stay visible.
    assert money(0.2879) == "$0.29"
    assert money(50.64) == "$50.64"
    assert money(0.0012) == "<$0.01"
    assert money(0) == "$0.00"
    assert money(1234.5) == "$1,234.50"
    # Per-step costs of tool calls keep four places: fractions of a cent stay readable.
    assert money(0.0031, 4) == "$0.0031"
    assert money(0.00001, 4) == "<$0.0001"
    assert millis(840.4) == "840 ms"
    assert millis(31153) == "31s"
    moment = timezone.now() - timedelta(minutes=3)
    html = when(moment)
    assert "3\xa0minutes ago" in html
    assert f'title="{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}' in html


def test_operations_says_where_each_policy_value_comes_from(analyst_client, settings):
    """Type override, global policy, or the SESSION_* default a blank field inherits."""
    from sessions_app.models import RetentionPolicy
    from sessions_app.policies import clear_policy_cache, ensure_global_policy

    settings.SESSION_RETENTION_DAYS = 33
    glob = ensure_global_policy()
    RetentionPolicy.objects.filter(pk=glob.pk).update(default_ttl_hours=5, retention_days=None)
    RetentionPolicy.objects.create(session_type="crypto", retention_days=7)
    clear_policy_cache()
    response = analyst_client.get(reverse("dashboard:operations"))
    rows = {
        row["type"]: {c["field"]: c for c in row["cells"]} for row in response.context["policies"]
    }
    assert rows["crypto"]["retention_days"]["value"] == 7
    assert rows["crypto"]["retention_days"]["source_label"] == "type override"
    assert rows["equity"]["retention_days"]["value"] == 33
    assert rows["equity"]["retention_days"]["source"] == "SESSION_RETENTION_DAYS"
    assert rows["equity"]["default_ttl_hours"]["source_label"] == "global policy"
    body = response.content.decode()
    assert "SESSION_RETENTION_DAYS (environment default)" in body
    assert 'data-field="retention_days" data-source="type">7 days' in body
