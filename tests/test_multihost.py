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
