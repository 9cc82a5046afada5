"""State that must be right on every host: the SECRET_KEY, client addresses, the login and
API-key limiters (normalised names, per-address cap, valid keys never refused)."""

import os
import subprocess
import sys

import pytest
from django.test import Client
from django.urls import reverse

from sessions_app import apikeys, ratelimit
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

CHECK = [sys.executable, "-c", "import django; django.setup(); print('ok')"]


def _env(**extra: str) -> dict[str, str]:
    drop = {"SECRET_KEY", "DEBUG", "FIML_DEV", "PYTEST_VERSION", "BEHIND_PROXY"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["DJANGO_SETTINGS_MODULE"] = "fimlsessions.settings"
    env.update(extra)
    return env


def test_secret_key_is_required_in_production_and_generated_only_for_development(tmp_path):
    result = subprocess.run(CHECK, env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert not (tmp_path / "secret_key").exists()
    # `make run` / `make test` (FIML_DEV) keep a generated key in the data dir, as before.
    dev = _env(FIML_DEV="true", FIML_DATA_DIR=str(tmp_path))
    result = subprocess.run(CHECK, env=dev, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "secret_key").read_text()) >= 50
    given = _env(SECRET_KEY="k" * 50)
    assert subprocess.run(CHECK, env=given, capture_output=True, timeout=60).returncode == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRUSTED_PROXIES", "10.0.0.1/8", "TRUSTED_PROXIES"),
        ("TRUSTED_PROXIES", "proxy.local", "TRUSTED_PROXIES"),
        ("BEHIND_PROXY", "true", "replaced by TRUSTED_PROXIES"),
    ],
)
def test_proxy_settings_are_checked_at_startup(variable, value, message):
    env = _env(SECRET_KEY="k" * 50, **{variable: value})
    result = subprocess.run(CHECK, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr


def post_login(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_login_limit_counts_every_spelling_of_a_username_as_one(make_user, settings):
    settings.LOGIN_RATE_LIMIT = (3, 300)
    user = make_user("analyst", username="analyst-nfkc")
    client = Client()
    # Django logs the fullwidth spelling in as "analyst-nfkc" (NFKC): same account, same count.
    spellings = ["analyst-nfkc", "\uff41nalyst-nfkc", "ANALYST-NFKC"]
    for name in spellings:
        assert post_login(client, name, "wrong").status_code == 200
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in "analyst-nfkc")
    blocked = post_login(client, fullwidth, PASSWORD)
    assert blocked.status_code == 429
    assert post_login(client, user.get_username(), PASSWORD).status_code == 429


def test_one_address_spraying_many_usernames_is_capped(make_user, settings):
    settings.LOGIN_RATE_LIMIT = (3, 300)
    settings.LOGIN_ADDRESS_RATE_LIMIT = (5, 300)
    victim = make_user("analyst")
    sprayer = Client(REMOTE_ADDR="10.20.30.40")
    for n in range(5):
        assert post_login(sprayer, f"someone-{n}", "Winter2026!").status_code == 200
    assert post_login(sprayer, victim.get_username(), PASSWORD).status_code == 429
    # Another address is not affected, and one good login does not reset the address's cap.
    assert post_login(Client(), victim.get_username(), PASSWORD).status_code == 302


def test_bad_keys_never_lock_out_a_valid_key_from_the_same_address(settings):
    settings.API_KEY_RATE_LIMIT = (3, 300)
    _, secret = apikeys.create_api_key("victim", ["read"])
    bad = {"Authorization": "Bearer fs_000000000000_" + "E" * 43}
    statuses = [
        Client().get("/api/v1/stats", headers=bad, REMOTE_ADDR="10.0.0.7").status_code
        for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    # REST and MCP share this check: the valid key is verified before the limit is consulted.
    assert ratelimit.authenticate_api_key(secret, "10.0.0.7") is not None
    good = {"Authorization": f"Bearer {secret}"}
    assert Client().get("/api/v1/stats", headers=good, REMOTE_ADDR="10.0.0.7").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_policy_change_saved_by_another_process_applies_here_within_a_second(settings):
    import time

    from sessions_app.policies import ensure_global_policy, get_effective_policy

    ensure_global_policy()
    before = get_effective_policy("equity").max_queries_per_session
    # Another process (as on another host) saves the change; this one only hears of it.
    code = (
        "import django; django.setup()\n"
        "from sessions_app.models import RetentionPolicy\n"
        "policy = RetentionPolicy.objects.get(session_type='')\n"
        f"policy.max_queries_per_session = {before + 7}\n"
        "policy.save()\n"
    )
    env = {**os.environ, "SESSION_REDIS_PREFIX": settings.SESSION_REDIS_PREFIX}
    env["DATABASE_URL"] = _test_database_url()
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    saved = time.monotonic()
    while get_effective_policy("equity").max_queries_per_session != before + 7:
        assert time.monotonic() - saved < 1.0, "the change did not arrive within 1 s"
        time.sleep(0.05)


def _test_database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
