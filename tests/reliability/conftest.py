"""Servers and processes the reliability tests start, stop and kill themselves.

* `own_redis`: a Redis of the test's own (append-only file, fsync every second) that the
  in-process app is pointed at; `own_redis.restart()` brings it back on the same port and data.
* `own_postgres`: a PostgreSQL of the test's own, migrated (copied from a cluster migrated once
  per run), for the app in subprocesses; pytest-django keeps the in-process connection.
* `procs`: starts app processes (scripts in `procs.py`, celery, a web server) with an
  environment pointing at those servers, and kills whatever is left at the end.
* `mcp_http(app, authorization)`: one request to the /mcp ASGI app's auth layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from asgiref.sync import async_to_sync

from fimlsessions import embedded

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SCRIPT_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll until `predicate()` is truthy (returns it); fail the test naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ---- Redis ------------------------------------------------------------------------------------


@dataclass
class OwnRedis:
    data_dir: Path
    handle: embedded.RedisHandle

    @property
    def url(self) -> str:
        return self.handle.url

    def stop(self) -> None:
        """A clean stop: Redis writes and fsyncs its append-only file, then exits."""
        self.handle.stop()

    def kill(self) -> None:
        self.handle.kill()

    def restart(self) -> None:
        """Start again on the same port and data dir (reloads the append-only file)."""
        port = self.handle.port
        self.handle = embedded.start_redis(self.data_dir, port=port)


@pytest.fixture
def own_redis(tmp_path, settings):
    """A fresh Redis for this test; the in-process app (store, archiver, jobs) uses it."""
    from sessions_app.redis_client import get_redis

    data_dir = tmp_path / "redis"
    server = OwnRedis(data_dir, embedded.start_redis(data_dir))
    original = settings.REDIS_URL
    settings.REDIS_URL = server.url
    get_redis.cache_clear()
    try:
        yield server
    finally:
        settings.REDIS_URL = original
        get_redis.cache_clear()
        with contextlib.suppress(embedded.EmbeddedServiceError):
            server.handle.stop(timeout=10)


# ---- PostgreSQL -------------------------------------------------------------------------------


def app_env(database_url: str, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """Environment of an app process pointed at these servers and this key prefix."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "CELERY_BROKER_URL")
    }
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SESSION_REDIS_PREFIX=prefix,
        SESSION_MIN_TTL_SECONDS="0",
        SECRET_KEY="reliability-tests-secret-key-" + "x" * 30,
        DJANGO_SETTINGS_MODULE="fimlsessions.settings",
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
        **extra,
    )
    return env


@pytest.fixture(scope="session")
def pg_template(tmp_path_factory):
    """A stopped cluster with the project's migrations applied, copied by `own_postgres`."""
    path = tmp_path_factory.mktemp("pg-template") / "postgres"
    server = embedded.start_postgres(path)
    try:
        env = app_env(server.url, "redis://127.0.0.1:1/0", "unused")
        result = subprocess.run(
            [PYTHON, "manage.py", "migrate", "-v0"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        server.stop()
    return path


@dataclass
class OwnPostgres:
    data_dir: Path
    handle: embedded.PostgresHandle

    @property
    def url(self) -> str:
        return self.handle.url

    def stop(self) -> None:
        self.handle.stop()

    def start(self) -> None:
        """Start again on the same port and data dir."""
        self.handle = embedded.start_postgres(self.data_dir, port=self.handle.port)

    def query(self, sql: str, params=()) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params=()):
        return self.query(sql, params)[0][0]


@pytest.fixture
def own_postgres(tmp_path, pg_template):
    data_dir = tmp_path / "postgres"
    shutil.copytree(pg_template, data_dir, symlinks=True)
    server = OwnPostgres(data_dir, embedded.start_postgres(data_dir))
    try:
        yield server
    finally:
        with contextlib.suppress(embedded.EmbeddedServiceError):
            server.handle.stop(timeout=10)


# ---- app processes ----------------------------------------------------------------------------


@dataclass
class Procs:
    """App processes for one test: scripts run to completion, or servers in the background."""

    env: dict[str, str]
    log_dir: Path
    started: list[subprocess.Popen] = field(default_factory=list)

    def script(self, command: str, *args, timeout: float = SCRIPT_TIMEOUT, check=True, **kw):
        """Run `procs.py command args`; the JSON it prints last, or the CompletedProcess."""
        argv = [PYTHON, "-m", "tests.reliability.procs", command, *map(str, args)]
        result = subprocess.run(
            argv,
            cwd=REPO,
            env={**self.env, **kw.pop("env", {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )
        if not check:
            return result
        assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    def start(self, name: str, argv: list[str], **env: str) -> subprocess.Popen:
        """A background process in its own process group, output to log_dir/name.log."""
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - the child writes it
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        proc.name = name
        self.started.append(proc)
        return proc

    def start_script(self, name: str, command: str, *args, **env: str) -> subprocess.Popen:
        argv = [PYTHON, "-m", "tests.reliability.procs", command, *map(str, args)]
        return self.start(name, argv, **env)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @staticmethod
    def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Signal the process group we created for `proc` (its pid), then reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    @staticmethod
    def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL if it lingers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            Procs.kill(proc)

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                self.kill(proc)
            # A group may outlive its leader (e.g. prefork children): end it too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def make_procs(tmp_path):
    """make_procs(database_url, redis_url, prefix) -> Procs; everything started is killed."""
    made: list[Procs] = []

    def make(database_url: str, redis_url: str, prefix: str, **extra: str) -> Procs:
        log_dir = tmp_path / "logs"
        log_dir.mkdir(exist_ok=True)
        procs = Procs(app_env(database_url, redis_url, prefix, **extra), log_dir)
        made.append(procs)
        return procs

    yield make
    for procs in made:
        procs.cleanup()


# ---- MCP over HTTP ----------------------------------------------------------------------------


def mcp_http(app, authorization: str | None, ip: str = "127.0.0.1") -> tuple[int, dict]:
    """One request to the /mcp ASGI app: (status, JSON body)."""
    headers = [(b"content-type", b"application/json")]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "headers": headers,
        "client": (ip, 40000),
        "query_string": b"",
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    async_to_sync(app)(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


@pytest.fixture
def sentinel_group(tmp_path, settings):
    """A real Sentinel group (1 primary, 1 replica, 3 sentinels) the store and broker follow."""
    from sessions_app.redis_client import get_redis
    from tests.redis_topologies import start_sentinel_group

    group = start_sentinel_group(tmp_path / "sentinel")
    saved = settings.REDIS_SENTINELS
    settings.REDIS_SENTINELS = [("127.0.0.1", s.port) for s in group.sentinels]
    settings.REDIS_SENTINEL_MASTER = group.master_name
    get_redis.cache_clear()
    try:
        yield group
    finally:
        # Back to the normal Redis before anything (the key cleanup) builds a client again.
        settings.REDIS_SENTINELS = saved
        get_redis.cache_clear()
        group.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    """A real 3-master Redis Cluster on free loopback ports, for one test module."""
    from tests.redis_topologies import start_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()
