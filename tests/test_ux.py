"""Issue 12 "wrong today" and issue 11 item 20 (dashboard parts): times and numbers that make
sense, error pages in the layout, the Postgres-down page, the CSP, encoded user links, admin."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask

from sessions_app.middleware import CONTENT_SECURITY_POLICY
from sessions_app.schedules import sync_periodic_tasks
from tests.factories import archived_session, live_session

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.I)


def detail(client, session_id) -> str:
    response = client.get(reverse("dashboard:session", args=[session_id]))
    assert response.status_code == 200
    return response.content.decode()


# ---- times --------------------------------------------------------------------------------------


def test_timeline_events_show_absolute_time_and_offset_from_start(analyst_client):
    session = archived_session(
        created_at=timezone.now() - timedelta(days=8),
        queries=[{"query_type": "price"}],
        messages=[("user", "hi")],
    )
    body = detail(analyst_client, session.id)
    start = timezone.localtime(session.created_at)
    # The factory spaces events one second apart from the start. The trace (which replaced the
    # timeline) shows each event's clock time to the millisecond, its full date and zone on
    # hover, and its offset from the session start.
    first = timezone.localtime(session.created_at + timedelta(seconds=1))
    assert f'title="{first:%Y-%m-%d %H:%M:%S}.' in body
    assert f">{first:%H:%M:%S}.{first.microsecond // 1000:03d}</time>" in body
    assert ">+0:01.000</span>" in body and ">+0:02.000</span>" in body
    assert "week ago" not in body.split('id="trace"')[1]  # no relative times on events
    assert f"{start:%Y-%m-%d %H:%M:%S}" in body


def test_archived_session_does_not_say_expires(analyst_client):
    session = archived_session(created_at=timezone.now() - timedelta(days=8))
    body = detail(analyst_client, session.id)
    assert "<dt>Expires</dt>" not in body
    assert "<dt>Ended</dt>" in body


def test_ended_live_session_shows_no_future_expiry(analyst_client, store):
    session = live_session(user_id="u1")
    store.end_session(session.id, archive=False)
    body = detail(analyst_client, session.id)
    assert "<dt>Expires</dt>" not in body and "<dt>Ended</dt>" in body


def test_running_live_session_counts_its_duration(analyst_client, store):
    session = live_session(user_id="u1")
    body = detail(analyst_client, session.id)
    assert "<dt>Expires</dt>" in body
    assert re.search(r"<dt>Duration</dt><dd>[0-9.]+s so far</dd>", body)
    assert "0.0s</dd>" not in body


def test_live_session_highlights_live_and_links_back_to_it(analyst_client):
    session = live_session(user_id="u1")
    body = detail(analyst_client, session.id)
    assert re.search(r'href="/live/"\s+aria-current="page"', body)
    assert "← Live sessions" in body and "← History" not in body
    archived = archived_session()
    body = detail(analyst_client, archived.id)
    assert re.search(r'href="/history/"\s+aria-current="page"', body) and "← History" in body


# ---- numbers ------------------------------------------------------------------------------------


def test_execution_is_labelled_queries_only(analyst_client):
    body = detail(analyst_client, archived_session(queries=[{"query_type": "price"}]).id)
    assert "Query execution" in body and "queries only" in body


def test_sessions_without_tool_calls_say_not_tracked(analyst_client):
    plain = archived_session(queries=[{"query_type": "price"}])
    body = detail(analyst_client, plain.id)
    assert body.count("not tracked") == 2 and "$0.00" not in body
    agent = archived_session(
        tool_calls=[{"tool_name": "t", "tokens_in": 1200, "tokens_out": 34, "cost": 0.2879}]
    )
    body = detail(analyst_client, agent.id)
    assert "not tracked" not in body and "$0.29" in body and "1,234" in body


def test_overview_period_dropdown_matches_the_data(analyst_client):
    response = analyst_client.get(reverse("dashboard:overview"))
    body = response.content.decode()
    assert re.search(r'<option value="30" selected>Last 30 days</option>', body)
    assert response.context["stats"]["period"]["days"] == 30


# ---- extend -------------------------------------------------------------------------------------


def test_extend_form_offers_what_the_policy_allows(admin_client, store):
    session = live_session(user_id="u1", ttl_hours=24)  # default policy: max TTL 168 h
    body = detail(admin_client, session.id)
    assert 'max="144.0"' in body
    assert "At most 144 more hours: equity sessions live at most 168 h (max TTL)." in body
    url = reverse("dashboard:session_extend", args=[session.id])
    response = admin_client.post(url, {"hours": "200"}, follow=True)
    text = response.content.decode()
    assert "At most 144 more hours: equity sessions live at most 168 h (max TTL)." in text
    assert store.get_session(session.id).expires_at == session.expires_at  # unchanged
    response = admin_client.post(url, {"hours": "144"}, follow=True)
    assert "Extended the session by 144 hours." in response.content.decode()


@pytest.fixture
def admin_client(retention_admin):
    client = Client()
    client.force_login(retention_admin)
    return client


# ---- user links ---------------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", ["../../admin/auth/user/add", "a/b", "100% ok?#x", "..", "."])
def test_user_ids_are_encoded_in_links_and_open_their_page(analyst_client, user_id):
    from sessions_app.templatetags.dashboard import user_url

    archived_session(user_id=user_id)
    body = analyst_client.get(reverse("dashboard:history")).content.decode()
    link = user_url(user_id)
    assert f'href="{link}"' in body
    assert "/admin/" not in link and "/../" not in link and "#" not in link
    response = analyst_client.get(link, follow=True)
    assert response.status_code == 200
    assert response.context["user_id"] == user_id


# ---- error pages --------------------------------------------------------------------------------


def test_user_without_a_role_gets_a_403_page_that_says_what_to_do(client, make_user):
    make_user("superuser", username="boss")
    client.force_login(make_user("none", username="newbie"))
    response = client.get(reverse("dashboard:overview"))
    assert response.status_code == 403
    body = response.content.decode()
    assert 'class="topbar"' in body  # in the layout
    assert "needs the <strong>Analysts</strong> role" in body and "newbie" in body
    assert "boss" in body  # whom to ask
    assert 'action="/accounts/logout/"' in body and 'href="/"' in body


def test_analyst_running_a_job_is_told_the_retention_admin_role(analyst_client):
    response = analyst_client.post(reverse("dashboard:run_job", args=["metrics"]))
    assert response.status_code == 403
    assert "needs the <strong>Retention admins</strong> role" in response.content.decode()


def test_404_is_in_the_layout_with_a_way_back(analyst_client):
    response = analyst_client.get("/no/such/page/")
    assert response.status_code == 404
    body = response.content.decode()
    assert 'class="topbar"' in body and "Page not found" in body and "Back to the overview" in body


def test_500_is_in_the_layout(analyst, settings):
    from sessions_app.views.errors import server_error

    response = server_error(None)
    body = response.content.decode()
    assert response.status_code == 500 and 'class="topbar"' in body
    assert "Back to the overview" in body


@pytest.fixture
def postgres_down():
    connection.close()
    real_port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = 1  # nothing listens there
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real_port


@pytest.mark.django_db(transaction=True)
def test_postgres_down_every_dashboard_page_says_history_unavailable(analyst, postgres_down):
    client = Client(raise_request_exception=False)
    # The login session itself lives in Postgres: a cookie is all a browser would send.
    client.cookies["sessionid"] = "x" * 32
    urls = [
        *(reverse(f"dashboard:{name}") for name in ("overview", "history", "live", "users")),
        reverse("dashboard:operations"),
        reverse("dashboard:user", args=["u1"]),
        reverse("dashboard:session", args=["00000000-0000-4000-8000-000000000000"]),
        "/accounts/login/",
        "/admin/",
    ]
    for name in urls:
        response = client.get(name)
        assert response.status_code == 503, name
        body = response.content.decode()
        assert "History unavailable" in body and 'class="topbar"' in body, name
        assert response["Retry-After"] == "30"
    response = client.get(reverse("dashboard:history"), **HTMX)
    assert response.status_code == 503


# ---- CSP ----------------------------------------------------------------------------------------


def test_every_page_has_a_csp_and_no_inline_script(analyst_client, admin_client, store):
    session = live_session(user_id="u1")
    sync_periodic_tasks()
    urls = [
        reverse("dashboard:overview"),
        reverse("dashboard:history"),
        reverse("dashboard:live"),
        reverse("dashboard:users"),
        reverse("dashboard:user", args=["u1"]),
        reverse("dashboard:operations"),
        reverse("dashboard:session", args=[session.id]),
        "/accounts/login/",
    ]
    for url in urls:
        response = analyst_client.get(url)
        assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, url
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        for attributes in SCRIPT_TAG.findall(response.content.decode()):
            assert "src=" in attributes or "application/json" in attributes, (url, attributes)


# ---- admin --------------------------------------------------------------------------------------


def test_admin_header_and_tidy_beat_schedules(client, make_user):
    client.force_login(make_user("superuser"))
    sync_periodic_tasks()
    body = client.get("/admin/").content.decode()
    assert "FIML Sessions administration" in body
    assert "/admin/django_celery_beat/solarschedule/" not in body
    assert "/admin/django_celery_beat/clockedschedule/" not in body
    task = PeriodicTask.objects.exclude(crontab=None).first()
    page = client.get(f"/admin/django_celery_beat/periodictask/{task.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert task.crontab.human_readable in html and "Translation:" not in html
    assert 'name="solar"' not in html and 'name="clocked"' not in html
    add = client.get("/admin/django_celery_beat/periodictask/add/").content.decode()
    assert "Translation:" not in add and "undefined" not in add
    ClockedSchedule.objects.create(clocked_time=timezone.now())
    assert "/admin/django_celery_beat/clockedschedule/" in client.get("/admin/").content.decode()


def test_retention_admin_without_staff_status_is_told_why(client, make_user):
    user = make_user("retention_admin")
    user.is_staff = False
    user.save()
    client.force_login(user)
    response = client.get("/admin/", follow=True)
    body = response.content.decode()
    assert 'id="needs-staff"' in body and "staff status" in body and "Retention admin" in body
