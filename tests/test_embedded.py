"""Embedded PostgreSQL/Redis (fimlsessions.embedded): persistence across restarts and crashes,
and the `exec` launcher. Plain functions on tmp_path: no Django database needed."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fimlsessions import embedded

psycopg = pytest.importorskip("psycopg")
redis = pytest.importorskip("redis")

REPO = Path(__file__).resolve().parent.parent


def _launcher_env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(FIML_DATA_DIR=str(data), PYTHONPATH=str(REPO), **extra)
    return env


def _cli(data: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fimlsessions.embedded", *args],
        env=_launcher_env(data, **extra),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _wait_for(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text().strip()


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while embedded._pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="module")
def pg_template(tmp_path_factory):
    """A stopped, initialised cluster: initdb once for all the launcher tests."""
    path = tmp_path_factory.mktemp("template") / "postgres"
    embedded.start_postgres(path).stop()
    return path


@pytest.fixture
def data(tmp_path, pg_template):
    """A data dir for the launcher, its PostgreSQL cluster copied from the template."""
    root = tmp_path / "data"
    root.mkdir()
    shutil.copytree(pg_template, root / "postgres", symlinks=True)
    return root


def test_postgres_keeps_data_across_restart_and_crashes(tmp_path):
    data = tmp_path / "pg"
    pg = embedded.start_postgres(data)
    try:
        assert pg.url == f"postgres://postgres@127.0.0.1:{pg.port}/fimlsessions"
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (v text)")
            conn.execute("INSERT INTO t VALUES ('before restart')")
        pg.stop()
        assert not embedded._pid_alive(pg.pid)
        assert not (data / "postmaster.pid").exists()

        pg = embedded.start_postgres(data)
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("INSERT INTO t VALUES ('before crash')")
        with pytest.raises(embedded.DataDirInUse):
            embedded.start_postgres(data)
        found = embedded.find_running_postgres(data)
        assert found is not None and (found.pid, found.port) == (pg.pid, pg.port)

        # SIGKILL the postmaster alone: a stale postmaster.pid and dying backends remain.
        pg.kill()
        assert (data / "postmaster.pid").exists()
        pg = embedded.start_postgres(data)
        # Then the whole server at once, and restart on the same port.
        port = pg.port
        pg.kill(group=True)
        pg = embedded.start_postgres(data, port=port)
        assert pg.port == port
        with psycopg.connect(pg.url) as conn:
            rows = conn.execute("SELECT v FROM t ORDER BY v").fetchall()
        assert rows == [("before crash",), ("before restart",)]
    finally:
        pg.stop()
    assert not embedded._pid_alive(pg.pid)


def test_redis_keeps_data_across_restart_and_sigkill(tmp_path):
    data = tmp_path / "redis"
    rd = embedded.start_redis(data)
    try:
        assert rd.url == f"redis://127.0.0.1:{rd.port}/0"
        redis.Redis.from_url(rd.url).set("k1", "v1")
        rd.stop()
        assert not embedded._pid_alive(rd.pid)

        rd = embedded.start_redis(data)
        client = redis.Redis.from_url(rd.url)
        assert client.get("k1") == b"v1"
        with pytest.raises(embedded.DataDirInUse):
            embedded.start_redis(data)
        client.set("k2", "v2")
        client.close()
        time.sleep(1.2)  # appendfsync everysec
        rd.kill()
        assert not embedded._pid_alive(rd.pid)

        rd = embedded.start_redis(data)
        client = redis.Redis.from_url(rd.url)
        assert client.mget("k1", "k2") == [b"v1", b"v2"]
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()
    finally:
        rd.stop()
    assert (data / "appendonly.aof").exists()
    assert (data / "redis.log").exists()


CHILD = """
import json, os, sys
import psycopg, redis
psycopg.connect(os.environ["DATABASE_URL"]).close()
redis.Redis.from_url(os.environ["REDIS_URL"]).ping()
state = json.loads(open(os.path.join(os.environ["FIML_DATA_DIR"], "embedded.json")).read())
print(json.dumps({"env": [os.environ["DATABASE_URL"], os.environ["REDIS_URL"]], "state": state}))
sys.exit(7)
"""


def test_exec_runs_command_with_urls_and_stops_servers(tmp_path, data):
    result = _cli(data, "exec", "--", sys.executable, "-c", CHILD)
    assert result.returncode == 7, result.stderr
    out = json.loads(result.stdout)
    state = out["state"]
    assert out["env"] == [
        f"postgres://postgres@127.0.0.1:{state['postgres']['port']}/fimlsessions",
        f"redis://127.0.0.1:{state['redis']['port']}/0",
    ]
    assert "embedded PostgreSQL on 127.0.0.1:" in result.stderr
    assert "embedded Redis on 127.0.0.1:" in result.stderr
    for kind in ("postgres", "redis"):
        assert _gone(state[kind]["pid"]), f"{kind} still running"
    assert not (data / "embedded.json").exists()


def test_exec_leaves_a_configured_url_alone(tmp_path):
    data = tmp_path / "data"
    configured = "postgres://someone@db.example.invalid:5432/elsewhere"
    child = "import os; print(os.environ['DATABASE_URL']); print(os.environ['REDIS_URL'])"
    result = _cli(data, "exec", "--", sys.executable, "-c", child, DATABASE_URL=configured)
    assert result.returncode == 0, result.stderr
    database_url, redis_url = result.stdout.split()
    assert database_url == configured
    assert redis_url.startswith("redis://127.0.0.1:")
    assert not (data / "postgres").exists()


def test_exec_reuses_running_servers_and_leaves_them_running(tmp_path, data, monkeypatch):
    monkeypatch.setenv("FIML_DATA_DIR", str(data))
    env = embedded.ensure_services(tmp_path, environ={}, register_cleanup=False, quiet=True)
    state = json.loads((data / "embedded.json").read_text())
    pids = [state["postgres"]["pid"], state["redis"]["pid"]]
    try:
        child = "import os; print(os.environ['DATABASE_URL']); print(os.environ['REDIS_URL'])"
        result = _cli(data, "exec", "--", sys.executable, "-c", child)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [env["DATABASE_URL"], env["REDIS_URL"]]
        assert "reusing the server of pid" in result.stderr
        assert all(embedded._pid_alive(pid) for pid in pids)
        assert embedded.running_urls(data) == env

        exports = _cli(data, "env")
        assert exports.returncode == 0, exports.stderr
        assert exports.stdout.splitlines() == [
            f"export DATABASE_URL={env['DATABASE_URL']}",
            f"export REDIS_URL={env['REDIS_URL']}",
        ]
        stopped = _cli(data, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert all(_gone(pid) for pid in pids)
        assert not (data / "embedded.json").exists()
        assert _cli(data, "env").returncode == 1
    finally:
        embedded.stop_services()
    assert all(_gone(pid) for pid in pids)


def test_owner_hands_servers_over_to_a_process_still_using_them(tmp_path, data, monkeypatch):
    monkeypatch.setenv("FIML_DATA_DIR", str(data))
    embedded.ensure_services(tmp_path, environ={}, register_cleanup=False, quiet=True)
    state = json.loads((data / "embedded.json").read_text())
    pids = [state["postgres"]["pid"], state["redis"]["pid"]]
    go = tmp_path / "go"
    script = f"echo up > {tmp_path}/up; while [ ! -e {go} ]; do sleep 0.05; done"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "fimlsessions.embedded", "exec", "--", "sh", "-c", script],
        env=_launcher_env(data),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(tmp_path / "up")
        embedded.stop_services()  # the launcher still uses them: they become its to stop
        assert all(embedded._pid_alive(pid) for pid in pids)
        state = json.loads((data / "embedded.json").read_text())
        assert state["postgres"]["owner_pid"] == launcher.pid
        go.touch()
        _, stderr = launcher.communicate(timeout=30)
        assert launcher.returncode == 0, stderr
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        for pid in pids:
            if embedded._pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert all(_gone(pid) for pid in pids)
    assert not (data / "embedded.json").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_exec_signal_leaves_no_process_behind(tmp_path, data, sig):
    # A background job in the command's process group, and a process that left it (setsid,
    # as honcho does with its children).
    escapee = "import os, time; os.setsid(); print(os.getpid(), flush=True); time.sleep(60)"
    script = (
        f"sleep 60 & echo $! > {tmp_path}/bg.pid; "
        f"{sys.executable} -c '{escapee}' > {tmp_path}/escapee.pid & "
        f"echo $$ > {tmp_path}/sh.pid; wait"
    )
    launcher = subprocess.Popen(
        [sys.executable, "-m", "fimlsessions.embedded", "exec", "--", "sh", "-c", script],
        env=_launcher_env(data),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sh_pid = int(_wait_for(tmp_path / "sh.pid"))
        bg_pid = int(_wait_for(tmp_path / "bg.pid"))
        escapee_pid = int(_wait_for(tmp_path / "escapee.pid"))
        state = json.loads((data / "embedded.json").read_text())
        server_pids = [state["postgres"]["pid"], state["redis"]["pid"]]
        launcher.send_signal(sig)
        _, stderr = launcher.communicate(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode == 128 + sig, stderr
    for pid in [sh_pid, bg_pid, escapee_pid, *server_pids]:
        assert _gone(pid), f"pid {pid} survived the launcher"
    assert not (data / "embedded.json").exists()
