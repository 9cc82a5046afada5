"""Two real web servers (gunicorn + uvicorn, configured by gunicorn.conf.py as the Procfile is)
on one database: logins made on one are accepted by the other, and X-Forwarded-For/-Proto count
only from TRUSTED_PROXIES. The second server trusts 127.0.0.1 only; requests sent from
127.0.0.2 play an untrusted peer that forges the headers.
"""

from __future__ import annotations

import http.client
import re
from http.cookies import SimpleCookie

import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection

from sessions_app import apikeys
from tests.conftest import PASSWORD

from .conftest import PYTHON, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Web:
    def __init__(self, port: int):
        self.port = port

    def request(self, method, path, body=None, headers=None, source="127.0.0.1"):
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=10, source_address=(source, 0)
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode()
        finally:
            conn.close()


def start_web(procs, **env) -> Web:
    port = free_port()
    procs.start(
        f"web-{port}",
        [PYTHON, "-m", "gunicorn", "fimlsessions.asgi:application",
         "--worker-class", "uvicorn_worker.UvicornWorker", "--workers", "1",
         "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "2"],
        **env,
    )  # fmt: skip
    web = Web(port)

    def up():
        try:
            return web.request("GET", "/accounts/login/")[0] in (200, 301)
        except OSError:
            return False

    wait_for(up, 60, f"the web server on {port}", interval=0.2)
    return web


def login(web: Web, username: str, headers: dict) -> str:
    """Log in through the form; returns the session cookie."""
    status, head, html = web.request("GET", "/accounts/login/", headers=headers)
    assert status == 200
    csrf = SimpleCookie(head["set-cookie"])["csrftoken"].value
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    status, head, _ = web.request(
        "POST",
        "/accounts/login/",
        body=f"username={username}&password={PASSWORD}&csrfmiddlewaretoken={token}",
        headers={
            **headers,
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf}",
            "Referer": "https://testserver/accounts/login/",
        },
    )
    assert status == 302, status
    return SimpleCookie(head["set-cookie"])["sessionid"].value


def test_two_hosts_share_logins_and_believe_forwarded_headers_only_from_trusted_proxies(
    make_procs, make_user, redis_prefix, settings
):
    from django.conf import settings as live

    db = connection.settings_dict
    database_url = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    user = make_user("analyst")
    # The servers use the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    user.password = make_password(PASSWORD)
    user.save(update_fields=["password"])
    _, valid_key = apikeys.create_api_key("victim", ["read"])
    procs = make_procs(
        database_url, live.REDIS_URL, redis_prefix, API_KEY_RATE_LIMIT="3/5m", ALLOWED_HOSTS="*"
    )
    plain = start_web(procs, TRUSTED_PROXIES="")
    proxied = start_web(procs, TRUSTED_PROXIES="127.0.0.1/32", HTTPS="true",
                        CSRF_TRUSTED_ORIGINS="https://testserver")  # fmt: skip

    # A login on one host is a login on the other (one SECRET_KEY, sessions in Postgres).
    https = {"X-Forwarded-Proto": "https", "Host": "testserver"}
    session = login(proxied, user.get_username(), https)
    status, _, _ = plain.request("GET", "/", headers={"Cookie": f"sessionid={session}"})
    assert status == 200
    session = login(plain, user.get_username(), {})
    status, _, _ = proxied.request("GET", "/", headers={**https, "Cookie": f"sessionid={session}"})
    assert status == 200

    # HTTPS=true: a forged X-Forwarded-Proto from an untrusted peer does not skip the redirect.
    status, head, _ = proxied.request("GET", "/accounts/login/", headers=https, source="127.0.0.2")
    assert status == 301 and head["location"].startswith("https://")

    bad = "Bearer fs_000000000000_" + "F" * 43

    def stats(web, key, forwarded_for, source="127.0.0.1"):
        headers = {"Authorization": key, "X-Forwarded-For": forwarded_for}
        if web is proxied:
            headers.update(https)
        return web.request("GET", "/api/v1/stats", headers=headers, source=source)[0]

    # Behind the trusted proxy, each client is its own X-Forwarded-For address: one client's
    # bad keys block that client's guesses only, and never a valid key.
    assert [stats(proxied, bad, "203.0.113.5") for _ in range(4)] == [401, 401, 401, 429]
    assert stats(proxied, bad, "203.0.113.6") == 401
    assert stats(proxied, f"Bearer {valid_key}", "203.0.113.6") == 200
    assert stats(proxied, f"Bearer {valid_key}", "203.0.113.5") == 200

    # Without a trusted proxy, a rotating X-Forwarded-For does not dodge the limit.
    codes = [stats(plain, bad, f"198.51.100.{n}") for n in range(4)]
    assert codes == [401, 401, 401, 429]
