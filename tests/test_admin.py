"""Django admin: every model's pages, search and filters, actions, permissions, no full COUNT(*)."""

import logging
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from sessions_app import apikeys
from sessions_app.admin import sessions as sessions_admin
from sessions_app.models import (
    ApiKey,
    DailyMetric,
    JobRun,
    RetentionPolicy,
    Session,
)
from sessions_app.policies import clear_policy_cache
from sessions_app.schedules import sync_periodic_tasks
from sessions_app.store import QueryRecord, get_session_store
from tests.factories import archived_session, archived_sessions, event_rows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # Hashing test users' passwords with PBKDF2 costs most of each test's set-up.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_policies():
    clear_policy_cache()
    yield
    clear_policy_cache()


@pytest.fixture
def superuser_client(client, make_user):
    client.force_login(make_user("superuser"))
    return client


@pytest.fixture
def retention_admin_client(client, retention_admin):
    client.force_login(retention_admin)
    return client


@pytest.fixture
def viewer_client(client, make_user):
    """Staff in the Analysts group: may open the admin, may only look."""
    client.force_login(_staff_analyst(make_user))
    return client


def _staff_analyst(make_user):
    user = make_user("analyst")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


def url(name, *args):
    return reverse(f"admin:{name}", args=args)


def messages_of(response):
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_every_model_page_loads_for_a_superuser(superuser_client):
    session = archived_session(
        user_id="u-<script>",
        tags=["etf"],
        queries=[{"result_summary": "<b>AAPL</b> up"}],
        messages=[("user", "<img src=x onerror=alert(1)>")],
    )
    DailyMetric.objects.get_or_create(day=timezone.now().date(), session_type="equity")
    run = JobRun.objects.create(job="cleanup_expired_sessions", started_at=timezone.now())
    key, _ = apikeys.create_api_key("ci", ["read"])
    sync_periodic_tasks()
    pages = [
        url("index"),
        url("sessions_app_session_changelist"),
        url("sessions_app_session_change", session.pk),
        url("sessions_app_session_live"),
        url("sessions_app_retentionpolicy_changelist"),
        url("sessions_app_retentionpolicy_add"),
        url("sessions_app_retentionpolicy_change", RetentionPolicy.objects.get(session_type="").pk),
        url("sessions_app_dailymetric_changelist"),
        url("sessions_app_jobrun_changelist"),
        url("sessions_app_jobrun_change", run.pk),
        url("sessions_app_apikey_changelist"),
        url("sessions_app_apikey_add"),
        url("sessions_app_apikey_change", key.pk),
        url("django_celery_beat_periodictask_changelist"),
    ]
    for page in pages:
        response = superuser_client.get(page)
        assert response.status_code == 200, page
    detail = superuser_client.get(url("sessions_app_session_change", session.pk)).content.decode()
    # The timeline is on the page, and user content is escaped.
    assert "Timeline: 2 events" in detail
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail
    assert "<img src=x" not in detail
    assert "&lt;b&gt;AAPL&lt;/b&gt; up" in detail
    assert "u-&lt;script&gt;" in detail


def test_session_timeline_is_paginated(superuser_client):
    session = archived_session(queries=[{"query_type": f"q{i}"} for i in range(120)])
    page1 = superuser_client.get(url("sessions_app_session_change", session.pk))
    assert page1.context["events_page"].paginator.count == 120
    assert len(page1.context["events_page"].object_list) == sessions_admin.EVENTS_PER_PAGE
    page3 = superuser_client.get(url("sessions_app_session_change", session.pk), {"events_page": 3})
    assert [e.seq for e in page3.context["events_page"]] == list(range(100, 120))


def test_session_search_by_id_user_and_tag(superuser_client):
    a = archived_session(user_id="alice", tags=["earnings", "q3"])
    b = archived_session(user_id="bob", tags=["macro"])
    changelist = url("sessions_app_session_changelist")

    def found(term):
        response = superuser_client.get(changelist, {"q": term})
        return {row.pk for row in response.context["cl"].result_list}

    assert found(str(a.pk)) == {a.pk}
    assert found("bob") == {b.pk}
    assert found("earnings") == {a.pk}
    assert found("nobody") == set()


def test_session_filters_by_type_status_and_dates(superuser_client):
    old = timezone.now() - timedelta(days=40)
    equity = archived_session(session_type="equity", status="completed")
    crypto = archived_session(session_type="crypto", status="expired")
    ancient = archived_session(session_type="crypto", status="expired", created_at=old)
    changelist = url("sessions_app_session_changelist")

    def listed(**params):
        response = superuser_client.get(changelist, params)
        return {row.pk for row in response.context["cl"].result_list}

    assert listed(session_type__exact="equity") == {equity.pk}
    assert listed(status__exact="expired") == {crypto.pk, ancient.pk}
    since = (timezone.now() - timedelta(days=7)).replace(hour=0, minute=0, second=0, microsecond=0)
    since = str(since)  # as the filter's own "Past 7 days" link writes it: aware
    assert listed(created_at__gte=since) == {equity.pk, crypto.pk}


def test_unfiltered_session_list_uses_the_estimate_not_count(superuser_client, monkeypatch):
    archived_sessions([{} for _ in range(30)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE sessions_app_session")
    monkeypatch.setattr(sessions_admin, "ESTIMATE_ABOVE_ROWS", 10)
    changelist = url("sessions_app_session_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = superuser_client.get(changelist)
    assert response.status_code == 200
    assert response.context["cl"].result_count == 30  # the estimate after ANALYZE
    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert not [s for s in sql if "COUNT(" in s and "SESSIONS_APP_SESSION" in s]
    assert any("RELTUPLES" in s for s in sql)
    # A filtered list is counted exactly.
    response = superuser_client.get(changelist, {"status__exact": "completed"})
    assert response.context["cl"].result_count == 30


def test_session_list_query_count_does_not_grow_with_rows(superuser_client):
    changelist = url("sessions_app_session_changelist")
    archived_sessions([{} for _ in range(3)])
    with CaptureQueriesContext(connection) as few:
        superuser_client.get(changelist)
    archived_sessions([{} for _ in range(40)])
    with CaptureQueriesContext(connection) as many:
        superuser_client.get(changelist)
    assert len(many) == len(few)


def test_archive_now_on_archived_rows_is_a_noop_with_a_message(retention_admin_client):
    session = archived_session()
    response = retention_admin_client.post(
        url("sessions_app_session_changelist"),
        {"action": "archive_now", "_selected_action": [str(session.pk)]},
        follow=True,
    )
    assert any("not live" in m for m in messages_of(response))
    assert Session.objects.get().archived_at == session.archived_at


def test_extend_on_archived_rows_reports_each_session(retention_admin_client):
    session = archived_session()
    response = retention_admin_client.post(
        url("sessions_app_session_changelist"),
        {"action": "extend_24h", "_selected_action": [str(session.pk)]},
        follow=True,
    )
    assert any("1 selected session(s) are archived" in m for m in messages_of(response))
    assert Session.objects.get().expires_at == session.expires_at


def test_delete_action_removes_sessions_and_events_in_sql(retention_admin_client):
    keep, *doomed = archived_sessions([{"queries": [{}, {}, {}]} for _ in range(3)])
    changelist = url("sessions_app_session_changelist")
    selected = {"action": "delete_selected", "_selected_action": [str(s.pk) for s in doomed]}
    confirm = retention_admin_client.post(changelist, selected)
    assert confirm.status_code == 200
    body = confirm.content.decode()
    assert "Sessions: 2" in body and "Timeline events: 6" in body
    response = retention_admin_client.post(changelist, {**selected, "post": "yes"}, follow=True)
    assert response.status_code == 200
    assert list(Session.objects.values_list("pk", flat=True)) == [keep.pk]
    assert len(event_rows()) == 3


def test_delete_view_for_one_session(superuser_client):
    session = archived_session(queries=[{}, {}])
    response = superuser_client.post(
        url("sessions_app_session_delete", session.pk), {"post": "yes"}, follow=True
    )
    assert response.status_code == 200
    assert not Session.objects.exists() and not event_rows()


def test_live_page_lists_and_acts_through_the_store(retention_admin_client):
    store = get_session_store()
    a = store.create_session(assets=["AAPL"], user_id="live-<a>", ttl_hours=1)
    b = store.create_session(assets=["BTC"], session_type="crypto", ttl_hours=1)
    c = store.create_session(assets=["SPY"], session_type="portfolio", ttl_hours=1, user_id="u")
    store.add_query(a.id, QueryRecord(query_type="price"))
    live = url("sessions_app_session_live")
    page = retention_admin_client.get(live)
    body = page.content.decode()
    assert page.status_code == 200
    assert all(str(s.id) in body for s in (a, b, c))
    assert "live-&lt;a&gt;" in body

    response = retention_admin_client.post(
        live, {"action": "extend", "hours": "2", "ids": [str(b.id)]}, follow=True
    )
    assert any("Extended 1" in m for m in messages_of(response))
    assert store.get_session(b.id).expires_at - b.expires_at == timedelta(hours=2)

    response = retention_admin_client.post(
        live, {"action": "extend", "hours": "9999", "ids": [str(b.id)]}, follow=True
    )
    assert any("max TTL" in m for m in messages_of(response))

    response = retention_admin_client.post(
        live, {"action": "archive", "ids": [str(a.id)]}, follow=True
    )
    assert any("Archived 1" in m for m in messages_of(response))
    archived = Session.objects.get(pk=a.id)
    assert archived.status == "expired" and archived.query_count == 1
    assert len(event_rows(archived.id)) == 1

    response = retention_admin_client.post(
        live, {"action": "delete", "ids": [str(c.id)]}, follow=True
    )
    assert store.get_session(c.id) is None
    assert store.get_session(b.id).is_live


def test_policy_change_is_validated_logged_and_audited(retention_admin_client, caplog):
    policy = RetentionPolicy.objects.get(session_type="")
    change = url("sessions_app_retentionpolicy_change", policy.pk)
    data = {
        "default_ttl_hours": 48,
        "max_ttl_hours": 24,  # below the default TTL: refused
        "idle_timeout_minutes": 30,
        "retention_days": 0,  # below 1 day: refused
        "max_queries_per_session": 500,
        "cleanup_interval_minutes": 15,
    }
    response = retention_admin_client.post(change, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "max_ttl_hours" in errors and "retention_days" in errors
    policy.refresh_from_db()
    assert policy.default_ttl_hours != 48  # nothing changed

    # Shortening retention asks first (tests/test_policy_admin.py); this post confirms.
    data.update(max_ttl_hours=96, retention_days=10, _confirm_retention="1")
    with caplog.at_level(logging.INFO, logger="sessions_app.admin"):
        response = retention_admin_client.post(change, data)
    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.default_ttl_hours, policy.max_ttl_hours, policy.retention_days) == (48, 96, 10)
    assert LogEntry.objects.filter(object_id=str(policy.pk)).exists()
    assert any("retention policy 'global' changed" in r.getMessage() for r in caplog.records)
    # The cleanup schedule followed the new interval.
    task = PeriodicTask.objects.get(task="sessions_app.tasks.cleanup_expired_sessions")
    assert (task.interval.every, task.interval.period) == (15, "minutes")


def test_per_type_override_shows_what_is_in_force(superuser_client):
    response = superuser_client.post(
        url("sessions_app_retentionpolicy_add"),
        # Shorter than the global retention: confirmed past the dry-run page.
        {"session_type": "crypto", "retention_days": 7, "_confirm_retention": "1"},
    )
    assert response.status_code == 302
    override = RetentionPolicy.objects.get(session_type="crypto")
    page = superuser_client.get(url("sessions_app_retentionpolicy_change", override.pk))
    assert "retention days 7" in page.content.decode()
    # The global row cannot be deleted: every type falls back to it.
    glob = RetentionPolicy.objects.get(session_type="")
    assert (
        superuser_client.get(url("sessions_app_retentionpolicy_delete", glob.pk)).status_code == 403
    )


def test_job_runs_are_read_only(superuser_client):
    run = JobRun.objects.create(job="cleanup_expired_sessions", started_at=timezone.now())
    assert superuser_client.get(url("sessions_app_jobrun_add")).status_code == 403
    response = superuser_client.post(
        url("sessions_app_jobrun_change", run.pk), {"job": "other", "outcome": "success"}
    )
    assert response.status_code == 403
    assert JobRun.objects.get().job == "cleanup_expired_sessions"


def test_api_key_secret_is_shown_once_and_revoke_works(superuser_client):
    response = superuser_client.post(
        url("sessions_app_apikey_add"), {"name": "reporting", "scopes": ["read"]}, follow=True
    )
    key = ApiKey.objects.get()
    shown = [m for m in messages_of(response) if "not shown again" in m]
    assert len(shown) == 1
    secret = shown[0].rsplit(" ", 1)[1]
    assert apikeys.authenticate(secret).pk == key.pk
    assert key.scopes == ["read"] and key.hashed_secret != secret
    # The secret is not on the key's page afterwards.
    page = superuser_client.get(url("sessions_app_apikey_change", key.pk))
    assert secret not in page.content.decode()
    assert key.hashed_secret not in page.content.decode()

    response = superuser_client.post(
        url("sessions_app_apikey_changelist"),
        {"action": "revoke", "_selected_action": [str(key.pk)]},
        follow=True,
    )
    assert any("Revoked 1" in m for m in messages_of(response))
    assert apikeys.authenticate(secret) is None


def test_api_key_needs_a_scope(superuser_client):
    response = superuser_client.post(url("sessions_app_apikey_add"), {"name": "x"})
    assert response.status_code == 200
    assert "scopes" in response.context["adminform"].form.errors
    assert not ApiKey.objects.exists()


def test_non_staff_analyst_cannot_enter_the_admin(analyst_client):
    response = analyst_client.get(url("sessions_app_session_changelist"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_view_only_staff_can_look_but_not_change(viewer_client):
    session = archived_session()
    store = get_session_store()
    live_session = store.create_session(assets=["AAPL"], ttl_hours=1)
    assert viewer_client.get(url("sessions_app_session_changelist")).status_code == 200
    assert viewer_client.get(url("sessions_app_session_live")).status_code == 200
    changelist = viewer_client.get(url("sessions_app_session_changelist"))
    assert changelist.context["action_form"] is None  # no action is allowed to a viewer
    policy = RetentionPolicy.objects.get(session_type="")
    response = viewer_client.post(
        url("sessions_app_retentionpolicy_change", policy.pk),
        {
            "default_ttl_hours": 1,
            "max_ttl_hours": 1,
            "idle_timeout_minutes": 1,
            "retention_days": 1,
            "max_queries_per_session": 1,
            "cleanup_interval_minutes": 1,
        },
    )
    assert response.status_code == 403
    assert (
        viewer_client.post(
            url("sessions_app_session_live"), {"action": "archive", "ids": [str(live_session.id)]}
        ).status_code
        == 403
    )
    assert store.get_session(live_session.id).is_live
    assert (
        viewer_client.post(
            url("sessions_app_session_delete", session.pk), {"post": "yes"}
        ).status_code
        == 403
    )
    assert Session.objects.filter(pk=session.pk).exists()


def test_retention_admin_can_change_policy_and_sessions_but_not_api_keys(
    retention_admin_client,
):
    assert (
        retention_admin_client.get(url("sessions_app_retentionpolicy_changelist")).status_code
        == 200
    )
    assert retention_admin_client.get(url("sessions_app_apikey_changelist")).status_code == 403
    assert retention_admin_client.get(url("sessions_app_jobrun_changelist")).status_code == 200
