"""Fixtures shared by tests/ and clients/python/tests/: a real gunicorn on a free loopback port."""

import http.client
import os
import subprocess
import time
import uuid
from dataclasses import dataclass

import pytest


@dataclass
class Server:
    url: str
    prefix: str  # the server's Redis key prefix; tests reading the store in-process use it too


@pytest.fixture(scope="module")
def gunicorn_server(django_db_setup, django_db_blocker):
    """The Procfile's web command (uvicorn workers) against the test database, one worker."""
    from django.conf import settings

    from sessions_app.benchmark.web import _database_url, _free_port, web_command
    from sessions_app.redis_client import get_redis

    port = _free_port()
    prefix = f"testgu{uuid.uuid4().hex[:10]}"
    env = dict(
        os.environ,
        DATABASE_URL=_database_url(),
        REDIS_URL=settings.REDIS_URL,
        SESSION_REDIS_PREFIX=prefix,
        SECRET_KEY=settings.SECRET_KEY,
        DEBUG="false",
        WEB_THREADS="4",
    )
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and Procfile
        web_command(port, 1),
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(process, port)
        yield Server(url=f"http://127.0.0.1:{port}", prefix=prefix)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        client = get_redis()
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)


def _wait_ready(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited: {process.stderr.read().decode()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/v1/openapi.json")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail("gunicorn did not answer within 60 s")


@pytest.fixture
def live_api(gunicorn_server, transactional_db, settings):
    """(server, API key with read+write): the key is committed, so gunicorn sees it."""
    from sessions_app import apikeys
    from sessions_app.policies import clear_policy_cache

    settings.SESSION_REDIS_PREFIX = gunicorn_server.prefix
    clear_policy_cache()
    _, secret = apikeys.create_api_key("live", ["read", "write"])
    return gunicorn_server, secret
