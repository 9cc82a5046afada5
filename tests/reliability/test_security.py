"""CSRF on every state-changing dashboard request (HTMX included), rate limits on login attempts
and API key guesses, and API keys stored only as hashes and never logged.

(`manage.py check --deploy` with the production settings is tests/test_foundation.py.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import re

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse

from fimlsessions.celery import app as celery_app
from sessions_app import apikeys, ratelimit
from sessions_app.models import ApiKey, RetentionPolicy
from sessions_app.policies import ensure_global_policy
from sessions_app.store import get_session_store
from tests.conftest import PASSWORD
from tests.factories import redis_unavailable

from .conftest import mcp_http

pytestmark = pytest.mark.django_db


# ---- CSRF ---------------------------------------------------------------------------------


def page_csrf_token(client: Client) -> str:
    """The token base.html hands HTMX (hx-headers on <body>), as a browser would read it."""
    html = client.get(reverse("dashboard:overview")).content.decode()
    match = re.search(r"hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'", html)
    assert match, "base.html must give HTMX the CSRF token"
    return match.group(1)


def state_changing_requests(session_id) -> list[tuple[str, dict]]:
    """(url, form data) of every POST the dashboard offers."""
    return [
        (reverse("dashboard:session_extend", args=[session_id]), {"hours": "1"}),
        (reverse("dashboard:session_end", args=[session_id]), {"status": "completed"}),
        (reverse("dashboard:session_archive", args=[session_id]), {}),
        (reverse("dashboard:session_delete", args=[session_id]), {}),
        (reverse("dashboard:run_job", args=["metrics"]), {}),
        (reverse("logout"), {}),
    ]


def test_every_state_changing_request_needs_the_csrf_token_htmx_included(make_user):
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        user = make_user("retention_admin")
        store = get_session_store()
        for htmx in (False, True):
            extra = {"HX-Request": "true"} if htmx else {}
            client = Client(enforce_csrf_checks=True)
            client.force_login(user)
            token = page_csrf_token(client)
            session = store.create_session(session_type="equity", user_id="csrf")
            requests = state_changing_requests(session.id)
            for url, data in requests:
                refused = client.post(url, data, headers=extra)
                assert refused.status_code == 403, (url, htmx)
                assert b"CSRF" in refused.content
            # The refused requests changed nothing: still live, same expiry, still logged in.
            unchanged = store.get_session(session.id)
            assert unchanged.is_live and unchanged.status == "active"
            assert unchanged.expires_at == session.expires_at
            assert client.get(reverse("dashboard:overview")).status_code == 200
            for url, data in requests:
                accepted = client.post(url, data, headers={**extra, "X-CSRFToken": token})
                # Through HTMX, "Run now" answers the refreshed jobs panel instead of a redirect.
                expected = 200 if htmx and "/operations/run/" in url else 302
                assert accepted.status_code == expected, (url, htmx, accepted.status_code)
            assert store.get_session(session.id) is None  # ended, archived, then deleted
            assert client.get(reverse("dashboard:overview")).status_code == 302  # logged out
    finally:
        celery_app.conf.task_always_eager = previous


def test_admin_changes_and_login_need_the_csrf_token(make_user):
    policy = ensure_global_policy()
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("superuser"))
    url = reverse("admin:sessions_app_retentionpolicy_change", args=[policy.pk])
    response = client.post(url, {"retention_days": "1"})
    assert response.status_code == 403
    assert RetentionPolicy.objects.get(pk=policy.pk).retention_days == policy.retention_days

    anonymous = Client(enforce_csrf_checks=True)
    for login_url in (reverse("login"), reverse("admin:login")):
        response = anonymous.post(login_url, {"username": "x", "password": "y"})
        assert response.status_code == 403, login_url


# ---- rate limits --------------------------------------------------------------------------


def post_login(client: Client, username: str, password: str, url: str | None = None):
    return client.post(url or reverse("login"), {"username": username, "password": password})


def test_failed_logins_are_limited_per_address_and_username(make_user, settings):
    settings.LOGIN_RATE_LIMIT = (3, 300)
    user = make_user("analyst")
    name = user.get_username()
    client = Client()
    for _ in range(3):
        response = post_login(client, name, "wrong")
        assert response.status_code == 200
        assert b"Please enter a correct username and password" in response.content
    blocked = post_login(client, name, PASSWORD)  # even the right password: no guessing
    assert blocked.status_code == 429
    assert b"Too many failed login attempts" in blocked.content
    assert 0 < int(blocked["Retry-After"]) <= 300
    assert "_auth_user_id" not in client.session
    # The admin's login page is the same door.
    assert post_login(client, name, PASSWORD, reverse("admin:login")).status_code == 429
    # Case does not dodge the limit; another username or another address is not blocked.
    assert post_login(client, name.upper(), "wrong").status_code == 429
    other = make_user("analyst")
    assert post_login(client, other.get_username(), PASSWORD).status_code == 302
    elsewhere = Client(REMOTE_ADDR="10.1.2.3")
    assert post_login(elsewhere, name, PASSWORD).status_code == 302


def test_a_successful_login_resets_the_count_and_a_new_window_starts_afresh(
    make_user, settings, monkeypatch
):
    settings.LOGIN_RATE_LIMIT = (3, 300)
    user = make_user("analyst")
    name = user.get_username()
    client = Client()
    for _ in range(2):
        assert post_login(client, name, "wrong").status_code == 200
    assert post_login(client, name, PASSWORD).status_code == 302
    client.logout()
    for _ in range(3):
        assert post_login(client, name, "wrong").status_code == 200
    assert post_login(client, name, PASSWORD).status_code == 429

    # Fixed windows: once the clock reaches the next window, counting starts again.
    now = [3_000_000.0]
    monkeypatch.setattr(ratelimit, "clock", lambda: now[0])
    for _ in range(3):
        post_login(client, name, "wrong")
    now[0] += 299
    assert post_login(client, name, PASSWORD).status_code == 429
    now[0] += 1
    assert post_login(client, name, PASSWORD).status_code == 302


def test_login_works_without_redis_and_says_it_is_not_limiting(make_user, settings, caplog):
    settings.LOGIN_RATE_LIMIT = (1, 300)
    user = make_user("analyst")
    client = Client()
    with redis_unavailable(), caplog.at_level(logging.WARNING, logger="sessions_app.ratelimit"):
        assert post_login(client, user.get_username(), "wrong").status_code == 200
        assert post_login(client, user.get_username(), PASSWORD).status_code == 302
        assert client.get(reverse("dashboard:history")).status_code == 200
    # Said once, then the limiter leaves the dead Redis alone for a while (no per-request cost).
    assert caplog.text.count("Redis unavailable, not limiting") == 1


def test_api_key_guesses_are_limited_per_address(settings):
    settings.API_KEY_RATE_LIMIT = (5, 300)
    _, secret = apikeys.create_api_key("good", ["read"])
    prefix = secret.split("_")[1]
    client = Client()

    def get(key, ip="127.0.0.1"):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return client.get("/api/v1/stats", headers=headers, REMOTE_ADDR=ip)

    assert get(None).status_code == 401  # no key at all is not a guess
    guesses = [f"fs_{prefix}_{'B' * 43}", "fs_000000000000_" + "C" * 43, "nonsense"] * 2
    for guess in guesses[:5]:
        assert get(guess).status_code == 401
    response = get(guesses[5])
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.json()["error"]["field"] == "Authorization"
    assert int(response["Retry-After"]) > 0
    # A valid key is verified before the limit: bad keys sent from (or forged as) its
    # holder's address never lock it out. Guessing one is what the limit makes hopeless.
    assert get(secret).status_code == 200
    assert get(guesses[0]).status_code == 429
    assert get(guesses[0], ip="10.9.8.7").status_code == 401  # other clients are unaffected


@pytest.mark.django_db(transaction=True)
def test_mcp_key_guesses_are_limited_too(settings):
    settings.API_KEY_RATE_LIMIT = (3, 300)
    from sessions_app.mcp import McpHttpApp

    app = McpHttpApp()
    for _ in range(3):
        assert mcp_http(app, "Bearer fs_000000000000_" + "D" * 43, ip="10.0.0.9")[0] == 401
    status, body = mcp_http(app, "Bearer fs_000000000000_" + "D" * 43, ip="10.0.0.9")
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert mcp_http(app, "Bearer nope", ip="10.0.0.10")[0] == 401


# ---- API keys: hashed, compared whole, never logged ---------------------------------------


def test_keys_are_stored_as_hashes_and_a_right_prefix_with_a_wrong_secret_fails():
    key, secret = apikeys.create_api_key("stored", ["read", "write"])
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    stored = json.dumps(row, default=str)
    _, prefix, tail = secret.split("_", 2)
    assert secret not in stored and tail not in stored
    assert row["hashed_secret"] == hashlib.sha256(secret.encode()).hexdigest()
    assert apikeys.authenticate(secret).pk == key.pk
    for wrong in (
        f"fs_{prefix}_{tail[:-1]}{'A' if tail[-1] != 'A' else 'B'}",  # one character off
        f"fs_{prefix}_{tail[::-1]}",
        f"fs_{prefix}_{tail}x",
        f"fs_{prefix}_{'A' * len(tail)}",
    ):
        assert apikeys.authenticate(wrong) is None
        response = Client().get("/api/v1/stats", headers={"Authorization": f"Bearer {wrong}"})
        assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_api_keys_never_reach_the_logs(caplog, settings):
    settings.DEBUG = True  # the noisiest configuration
    good_key, good = apikeys.create_api_key("logged", ["read", "write"])
    revoked_key, revoked = apikeys.create_api_key("revoked", ["read"])
    apikeys.revoke(revoked_key)
    wrong = f"fs_{good_key.prefix}_{'Z' * 43}"
    secrets = {good, revoked, wrong}
    client = Client()
    with caplog.at_level(logging.DEBUG):
        for secret in secrets:
            headers = {"Authorization": f"Bearer {secret}"}
            client.get("/api/v1/stats", headers=headers)
            client.post(
                "/api/v1/sessions",
                json.dumps({"session_type": "nope"}),
                content_type="application/json",
                headers=headers,
            )
            client.get("/api/v1/sessions/bad$id", headers=headers)
            client.get("/api/v1/sessions", headers={"Authorization": secret})  # no scheme
        with redis_unavailable():  # error paths log more
            client.post(
                "/api/v1/sessions",
                json.dumps({"session_type": "equity"}),
                content_type="application/json",
                headers={"Authorization": f"Bearer {good}"},
            )
        from sessions_app.mcp import McpHttpApp, call_tool

        from .test_access import mcp_http

        for secret in secrets - {good}:
            mcp_http(McpHttpApp(), f"Bearer {secret}")
        key = apikeys.authenticate(good)
        async_to_sync(call_tool)("track-query", {"sessionId": "bad"}, key)
    assert caplog.records, "the calls above must have logged something"
    text = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    for secret in secrets:
        assert secret not in text
        assert secret.split("_", 2)[2] not in text
