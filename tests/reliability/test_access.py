"""The permission matrix: every role against every dashboard URL, every admin page, every REST
route (by API key scope) and every MCP tool, each with the outcome it must get.

Roles: anonymous, a plain user (no role), analyst, retention admin, staff (admin access, no
permissions) and superuser. A new URL, admin model, route or tool fails these tests until it is
added to the tables below with its expected outcome.
"""

from __future__ import annotations

import json
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from fimlsessions.celery import app as celery_app
from sessions_app import apikeys, urls
from sessions_app.alerts.models import AlertEvent, AlertRule, WebhookDelivery, WebhookTarget
from sessions_app.audit import AuditEntry
from sessions_app.models import ApiKey, DailyMetric, JobRun, QuarantinedSession, SavedView
from sessions_app.policies import ensure_global_policy
from sessions_app.store import get_session_store
from tests.factories import archived_session

from .conftest import mcp_http

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "none", "staff", "analyst", "retention_admin", "superuser")
# What each role may do on the dashboard (sessions_app.roles; superusers may do everything).
DASHBOARD_GRANTS = {
    "anonymous": set(),
    "none": set(),
    "staff": set(),
    "analyst": {"view", "export"},
    "retention_admin": {"view", "export", "manage", "run_jobs", "silence"},
    "superuser": {"view", "export", "manage", "run_jobs", "silence"},
}
# URL name -> [(method, permission beyond "view", status when allowed)]
DASHBOARD = {
    "overview": [("GET", None, 200)],
    "export_metrics": [("GET", "export", 200)],
    "history": [("GET", None, 200)],
    "history_export": [("GET", "export", 200)],
    "session": [("GET", None, 200)],
    "session_extend": [("POST", "manage", 302), ("GET", "manage", 405)],
    "session_end": [("POST", "manage", 302), ("GET", "manage", 405)],
    "session_archive": [("POST", "manage", 302), ("GET", "manage", 405)],
    "session_delete": [("GET", "manage", 200), ("POST", "manage", 302)],
    "live": [("GET", None, 200)],
    "users": [("GET", None, 200)],
    "user": [("GET", None, 200)],
    "operations": [("GET", None, 200)],
    "operations_health": [("GET", None, 200)],
    "run_job": [("POST", "run_jobs", 302), ("GET", "run_jobs", 405)],
    "alerts": [("GET", None, 200)],
    "alert_silence": [("POST", "silence", 302), ("GET", "silence", 405)],
    "suggest": [("GET", None, 200)],
    "saved_views": [("GET", None, 200), ("POST", None, 302)],
    # A shared view opens for any dashboard user; only its owner edits (each role gets its own).
    "saved_view": [("GET", None, 302)],
    "saved_view_edit": [("POST", None, 302), ("GET", None, 405)],
    "saved_view_delete": [("POST", None, 302), ("GET", None, 405)],
}
POST_DATA = {
    "session_extend": {"hours": "1"},
    "session_end": {"status": "completed"},
    "alert_silence": {"hours": "1"},
    "saved_views": {"name": "matrix", "page": "history", "query": "type=equity"},
    "saved_view_edit": {"name": "renamed"},
}

# Admin: models a retention admin may view / add (sessions_app.roles); models nobody may add.
ADMIN_RA_VIEW = {
    "sessions_app.session",
    "sessions_app.dailymetric",
    "sessions_app.jobrun",
    "sessions_app.retentionpolicy",
    "sessions_app.alertrule",
    "sessions_app.alertevent",
    "sessions_app.webhooktarget",
    "sessions_app.webhookdelivery",
    "sessions_app.auditentry",
}
ADMIN_RA_ADD = {
    "sessions_app.retentionpolicy",
    "sessions_app.alertrule",
    "sessions_app.webhooktarget",
}
STANDARD_ADMIN_PAGES = ("_changelist", "_add", "_history", "_delete", "_change")
ADMIN_NO_ADD = {
    "sessions_app.quarantinedsession",
    "sessions_app.savedview",
    "sessions_app.session",
    "sessions_app.dailymetric",
    "sessions_app.jobrun",
    "sessions_app.alertevent",
    "sessions_app.webhookdelivery",
    "sessions_app.auditentry",
}


@pytest.fixture
def clients(make_user):
    """A logged-in test client per role (anonymous: not logged in)."""
    result = {"anonymous": Client()}
    for role in ROLES[1:]:
        client = Client()
        client.force_login(make_user(role))
        result[role] = client
    return result


@pytest.fixture
def eager_celery():
    # "Run now" queues a task; run it in-process instead of on a broker no worker reads.
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def dashboard_kwargs(name: str, pattern, session_id, rule_id: int = 0) -> dict:
    values = {
        "session_id": session_id,
        "fmt": "csv",
        "user_id": "user-1",
        "job": "metrics",
        "rule_id": rule_id,
    }
    values.update(kind="user", pk=session_id)
    return {arg: values[arg] for arg in pattern.pattern.converters}


def _saved_view_of(client, user_model) -> SavedView:
    """A fresh saved view owned by the client's user (any user for anonymous clients)."""
    user_id = client.session.get("_auth_user_id")
    owner = user_model.objects.get(pk=user_id) if user_id else user_model.objects.first()
    return SavedView.objects.create(
        owner=owner, name=f"v{uuid.uuid4().hex[:8]}", page="history", query="type=equity"
    )


def test_every_dashboard_url_answers_each_role_as_it_must(clients, eager_celery, django_user_model):
    names = {p.name for p in urls.urlpatterns}
    assert names == set(DASHBOARD), f"add to the matrix: {names ^ set(DASHBOARD)}"
    archived = archived_session(user_id="user-1", purpose="matrix")
    rule = AlertRule.objects.create(name="matrix", metric="live_sessions", threshold=1)
    store = get_session_store()
    mismatches = []
    checked = 0
    for pattern in urls.urlpatterns:
        for method, permission, allowed_status in DASHBOARD[pattern.name]:
            for role in ROLES:
                # Writes get a live session of their own, so each role's request can succeed.
                target = archived.id
                if method == "POST" and pattern.name.startswith("session_"):
                    target = store.create_session(session_type="equity", user_id="user-1").id
                if pattern.name in ("saved_view", "saved_view_edit", "saved_view_delete"):
                    target = _saved_view_of(clients[role], django_user_model).pk
                url = reverse(
                    f"dashboard:{pattern.name}",
                    kwargs=dashboard_kwargs(pattern.name, pattern, target, rule.pk),
                )
                client = clients[role]
                if method == "GET":
                    response = client.get(url)
                else:
                    response = client.post(url, POST_DATA.get(pattern.name, {}))
                grants = DASHBOARD_GRANTS[role]
                if role == "anonymous":
                    expected = 302
                elif "view" not in grants or (permission and permission not in grants):
                    expected = 403
                else:
                    expected = allowed_status
                got = response.status_code
                if got != expected:
                    mismatches.append((pattern.name, method, role, expected, got))
                elif role == "anonymous":
                    assert response["Location"].startswith(reverse("login") + "?next=")
                checked += 1
    assert mismatches == [], mismatches
    assert checked == len(ROLES) * sum(len(v) for v in DASHBOARD.values())


def admin_objects():
    """One object of every model the admin manages, for its change page."""
    from django.contrib.auth.models import Group
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    session = archived_session(queries=[{"query_type": "price"}])
    interval = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    key, _ = apikeys.create_api_key("matrix", ["read"])
    rule = AlertRule.objects.create(name="matrix", metric="live_sessions", threshold=1)
    target = WebhookTarget.objects.create(name="matrix", url="https://example.com/h", secret="s")
    return {
        "sessions_app.session": session,
        "sessions_app.retentionpolicy": ensure_global_policy(),
        "sessions_app.dailymetric": DailyMetric.objects.get_or_create(
            day=timezone.localdate(), session_type="equity"
        )[0],
        "sessions_app.quarantinedsession": QuarantinedSession.objects.create(
            session_id="q1", snapshot="{}", error="DataError", quarantined_at=timezone.now()
        ),
        "sessions_app.jobrun": JobRun.objects.create(
            job="cleanup_expired_sessions", started_at=timezone.now()
        ),
        "sessions_app.apikey": key,
        "sessions_app.alertrule": rule,
        "sessions_app.alertevent": AlertEvent.objects.create(
            rule=rule, kind="fired", at=timezone.now(), value=2, threshold=1
        ),
        "sessions_app.webhooktarget": target,
        "sessions_app.webhookdelivery": WebhookDelivery.objects.create(
            target=target, event=AlertEvent.objects.first(), payload={}
        ),
        "sessions_app.auditentry": AuditEntry.objects.first(),
        "sessions_app.savedview": SavedView.objects.create(
            owner=get_user_model().objects.first(),
            name="matrix",
            page="history",
        ),
        "django_celery_beat.periodictask": PeriodicTask.objects.create(
            name="matrix", task="sessions_app.tasks.cleanup_expired_sessions", interval=interval
        ),
        "django_celery_beat.intervalschedule": interval,
        "django_celery_beat.crontabschedule": CrontabSchedule.objects.create(minute="5"),
        "django_celery_beat.solarschedule": SolarSchedule.objects.create(
            event="sunrise", latitude=10, longitude=10
        ),
        "django_celery_beat.clockedschedule": ClockedSchedule.objects.create(
            clocked_time=timezone.now()
        ),
        "auth.group": Group.objects.first(),
        "auth.user": None,  # filled with the superuser below
    }


def test_every_admin_page_answers_each_role_as_it_must(clients, django_user_model):
    objects = admin_objects()
    objects["auth.user"] = django_user_model.objects.filter(is_superuser=True).first()
    registered = {model._meta.label_lower: model for model in admin.site._registry}
    assert set(registered) == set(objects), f"add to the matrix: {set(registered) ^ set(objects)}"
    mismatches = []
    for label in sorted(registered):
        model = registered[label]
        info = (model._meta.app_label, model._meta.model_name)
        pages = {
            "changelist": reverse("admin:{}_{}_changelist".format(*info)),
            "add": reverse("admin:{}_{}_add".format(*info)),
            "change": reverse("admin:{}_{}_change".format(*info), args=[objects[label].pk]),
        }
        # A model admin's own pages (e.g. the live sessions page) need what its list needs.
        for pattern in admin.site._registry[model].get_urls():
            name = pattern.name or ""
            if name and not name.endswith(STANDARD_ADMIN_PAGES) and not pattern.pattern.converters:
                pages[name] = reverse(f"admin:{name}")
        for kind, url in pages.items():
            for role in ROLES:
                if role in ("anonymous", "none", "analyst"):
                    expected = 302  # not staff: the admin's login page
                elif role == "staff":
                    expected = 403
                elif role == "retention_admin":
                    allowed = ADMIN_RA_ADD if kind == "add" else ADMIN_RA_VIEW  # custom: view
                    expected = 200 if label in allowed else 403
                else:
                    expected = 403 if kind == "add" and label in ADMIN_NO_ADD else 200
                response = clients[role].get(url)
                if response.status_code != expected:
                    mismatches.append((label, kind, role, expected, response.status_code))
                elif expected == 302:
                    assert response["Location"].startswith(reverse("admin:login"))
    assert mismatches == [], mismatches
    index = {role: clients[role].get(reverse("admin:index")).status_code for role in ROLES}
    assert index == {
        "anonymous": 302,
        "none": 302,
        "analyst": 302,
        "staff": 200,
        "retention_admin": 200,
        "superuser": 200,
    }


# ---- REST API -----------------------------------------------------------------------------

API_CALLS = {
    # (method, path template) -> (body or query, status when allowed)
    ("post", "/api/v1/sessions"): ({"session_type": "equity"}, 201),
    ("get", "/api/v1/sessions"): ({"user_id": "user-1"}, 200),
    ("get", "/api/v1/sessions/{session_id}"): (None, 200),
    ("delete", "/api/v1/sessions/{session_id}"): (None, 204),
    ("get", "/api/v1/sessions/{session_id}/timeline"): (None, 200),
    ("post", "/api/v1/sessions/{session_id}/queries"): ({"query_type": "price"}, 201),
    ("post", "/api/v1/sessions/{session_id}/messages"): ({"role": "user", "content": "hi"}, 201),
    ("post", "/api/v1/sessions/{session_id}/tool-calls"): ({"tool_name": "quote"}, 201),
    ("put", "/api/v1/sessions/{session_id}/context"): ({"key": "k", "value": 1}, 200),
    ("put", "/api/v1/sessions/{session_id}/results"): ({"key": "k", "value": 1}, 200),
    ("post", "/api/v1/sessions/{session_id}/extend"): ({"hours": 1}, 200),
    ("post", "/api/v1/sessions/{session_id}/end"): ({"status": "completed"}, 200),
    ("get", "/api/v1/stats"): ({"days": 7}, 200),
    ("get", "/api/v1/user-summary"): ({"user_id": "user-1"}, 200),
    ("patch", "/api/v1/sessions/{session_id}"): ({"purpose": "p"}, 200),
    ("post", "/api/v1/sessions/{session_id}/requests"): ({"mark_error": True}, 200),
    ("get", "/api/v1/sessions/{session_id}/statistics"): (None, 200),
    ("post", "/api/v1/ingest"): (
        {"operations": [{"op": "query", "session_id": "s", "event_id": "e", "query_type": "p"}]},
        200,
    ),
}


@pytest.fixture
def api_keys():
    """Bearer values: none, read, write, revoked (read+write), a wrong secret with a real
    prefix, and garbage."""
    _, read = apikeys.create_api_key("read", ["read"])
    _, write = apikeys.create_api_key("write", ["write"])
    revoked_key, revoked = apikeys.create_api_key("revoked", ["read", "write"])
    apikeys.revoke(revoked_key)
    prefix = read.split("_")[1]
    return {
        "none": None,
        "read": read,
        "write": write,
        "revoked": revoked,
        "wrong secret": f"fs_{prefix}_{'A' * 43}",
        "garbage": "not-a-key",
    }


def test_every_api_route_answers_each_key_as_it_must(api_keys, settings):
    # This test checks the matrix, not the guessing limit (test_security does).
    settings.API_KEY_RATE_LIMIT = (10_000, 300)
    from sessions_app.api import api

    routes = {
        (method, path)
        for path, operations in api.get_openapi_schema()["paths"].items()
        for method in operations
    }
    assert routes == set(API_CALLS), f"add to the matrix: {routes ^ set(API_CALLS)}"
    store = get_session_store()
    client = Client(enforce_csrf_checks=True)
    mismatches = []
    for (method, template), (payload, allowed_status) in API_CALLS.items():
        scope = "read" if method == "get" else "write"
        for name, secret in api_keys.items():
            session_id = store.create_session(session_type="equity", user_id="user-1").id
            path = template.format(session_id=session_id)
            headers = {"Authorization": f"Bearer {secret}"} if secret else {}
            if method == "get":
                response = client.get(path, payload or {}, headers=headers)
            else:
                response = getattr(client, method)(
                    path,
                    json.dumps(payload) if payload is not None else None,
                    content_type="application/json",
                    headers=headers,
                )
            if name in ("read", "write"):
                expected = allowed_status if name == scope else 403
            else:
                expected = 401
            if response.status_code != expected:
                mismatches.append((method, template, name, expected, response.status_code))
            elif expected in (401, 403):
                error = response.json()["error"]
                assert error["field"] == "Authorization" and error["reason"]
                if expected == 401:
                    assert response["WWW-Authenticate"].startswith("Bearer")
    assert mismatches == [], mismatches


# ---- MCP ----------------------------------------------------------------------------------


def mcp_arguments(tool: str, session_id: str) -> dict:
    return {
        "create-analysis-session": {"sessionType": "equity", "userId": "user-1"},
        "get-session-info": {"sessionId": session_id},
        "list-sessions": {"userId": "user-1"},
        "extend-session": {"sessionId": session_id, "hours": 1},
        "get-session-analytics": {"days": 7},
        "track-query": {"sessionId": session_id, "queryType": "price"},
        "add-message": {"sessionId": session_id, "role": "user", "content": "hi"},
        "end-session": {"sessionId": session_id},
        "get-session-timeline": {"sessionId": session_id},
        "get-session-statistics": {"sessionId": session_id},
        "record-tool-invocation": {"sessionId": session_id, "toolName": "quote"},
        "update-session-metadata": {"sessionId": session_id, "purpose": "p"},
        "record-request": {"sessionId": session_id, "markError": True},
        "update-context": {"sessionId": session_id, "key": "k", "value": 1},
        "store-intermediate-result": {"sessionId": session_id, "key": "k", "value": 1},
        "delete-session": {"sessionId": session_id},
    }[tool]


MCP_SCOPES = {
    "create-analysis-session": "write",
    "get-session-info": "read",
    "list-sessions": "read",
    "extend-session": "write",
    "get-session-analytics": "read",
    "track-query": "write",
    "add-message": "write",
    "end-session": "write",
    "get-session-timeline": "read",
    "get-session-statistics": "read",
    "record-tool-invocation": "write",
    "update-session-metadata": "write",
    "record-request": "write",
    "update-context": "write",
    "store-intermediate-result": "write",
    "delete-session": "write",
}


# The MCP code drops stale connections around each call (close_old_connections), which would
# break the outer transaction of a plain django_db test: these two run without one.
@pytest.mark.django_db(transaction=True)
def test_every_mcp_tool_answers_each_key_as_it_must():
    from sessions_app.mcp import TOOLS, call_tool

    assert set(TOOLS) == set(MCP_SCOPES), f"add to the matrix: {set(TOOLS) ^ set(MCP_SCOPES)}"
    keys = {
        scope: apikeys.authenticate(apikeys.create_api_key(scope, [scope])[1])
        for scope in ("read", "write")
    }
    store = get_session_store()
    call = async_to_sync(call_tool)  # tools run in this thread, on its database connection
    for tool, scope in MCP_SCOPES.items():
        for key_scope, key in keys.items():
            session_id = str(store.create_session(session_type="equity", user_id="user-1").id)
            result = call(tool, mcp_arguments(tool, session_id), key)
            if key_scope == scope:
                assert not result.is_error, (tool, key_scope, result.content)
            else:
                assert result.is_error, (tool, key_scope)
                assert result.structured_content["error"]["code"] == "forbidden"
                assert scope in result.structured_content["error"]["reason"]


@pytest.mark.django_db(transaction=True)
def test_mcp_over_http_refuses_missing_wrong_and_revoked_keys(api_keys, settings):
    settings.API_KEY_RATE_LIMIT = (10_000, 300)
    from sessions_app.mcp import McpHttpApp

    app = McpHttpApp()
    for name in ("none", "revoked", "wrong secret", "garbage"):
        secret = api_keys[name]
        status, body = mcp_http(app, f"Bearer {secret}" if secret else None)
        assert status == 401, name
        assert body["error"]["field"] == "Authorization"
    assert ApiKey.objects.get(name="revoked").revoked_at is not None


def test_unknown_session_ids_are_404_not_500(clients, api_keys):
    unknown = uuid.uuid4()
    response = clients["analyst"].get(reverse("dashboard:session", args=[unknown]))
    assert response.status_code == 404
    response = Client().get(
        f"/api/v1/sessions/{unknown}", headers={"Authorization": f"Bearer {api_keys['read']}"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "session_id"
