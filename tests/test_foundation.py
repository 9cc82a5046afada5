"""The skeleton: login wall, health endpoint, settings helpers, deploy checks."""

import json
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from fimlsessions.env import env_bool, env_int, env_list


def test_dashboard_requires_login(client):
    response = client.get(reverse("dashboard:overview"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_logged_in_analyst_sees_shell(analyst_client):
    response = analyst_client.get(reverse("dashboard:overview"))
    assert response.status_code == 200
    assert b"Overview" in response.content


def test_login_page_renders_form(client, db):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b"csrfmiddlewaretoken" in response.content


def test_env_helpers_name_the_variable(monkeypatch):
    monkeypatch.setenv("FS_TEST_INT", "twelve")
    with pytest.raises(ImproperlyConfigured, match="FS_TEST_INT"):
        env_int("FS_TEST_INT", 1)
    monkeypatch.setenv("FS_TEST_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("FS_TEST_INT", 1, minimum=1)
    monkeypatch.setenv("FS_TEST_BOOL", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FS_TEST_BOOL"):
        env_bool("FS_TEST_BOOL", False)
    monkeypatch.setenv("FS_TEST_BOOL", "Yes")
    assert env_bool("FS_TEST_BOOL", False) is True
    monkeypatch.setenv("FS_TEST_LIST", " a, b ,,c")
    assert env_list("FS_TEST_LIST", []) == ["a", "b", "c"]


def test_bad_setting_fails_at_startup_with_its_name():
    env = {**os.environ, "SESSION_DEFAULT_TTL_HOURS": "soon"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "SESSION_DEFAULT_TTL_HOURS" in result.stderr


def test_deploy_check_is_clean_with_production_settings():
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DEBUG": "false",
        "HTTPS": "true",
        "SECRET_KEY": "x" * 20 + "-production-secret-key-for-the-deploy-check-0123456789",
        "ALLOWED_HOSTS": "sessions.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
def test_healthz_reports_each_part(client):
    # No worker or beat runs in this test: healthz must say so with 503, and name the parts.
    response = client.get("/healthz")
    body = json.loads(response.content)
    assert response.status_code == 503
    assert body["checks"]["postgres"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["worker"]["ok"] is False
    assert set(body["checks"]) == {"postgres", "redis", "worker", "beat"}
