"""The shared Redis client (plain, Sentinel or Cluster, from settings) and key naming.

* Plain: REDIS_URL names the server.
* Sentinel: REDIS_SENTINELS (host:port,...) and REDIS_SENTINEL_MASTER; the client asks the
  sentinels for the current primary and follows a failover. REDIS_URL then only gives the
  database number and password, if any.
* Cluster: REDIS_CLUSTER=true; REDIS_URL names any node, the client learns the rest.

Clients fail fast, for a hung Redis (SIGSTOP, a dead host: connections open, nothing answers)
as for a refused one: short connect and read timeouts, no automatic retry (a resent write could
be applied twice), and a breaker: after a timeout, the process stops asking that Redis for
REDIS_BREAKER_SECONDS, so a page that makes ten Redis calls waits for one timeout, not ten.
"""

import threading
import time
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry


class _Breaker:
    """Open for `seconds` after a timeout: calls then fail at once instead of waiting."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._until = 0.0
        self._lock = threading.Lock()

    def check(self) -> None:
        if time.monotonic() < self._until:
            raise redis.exceptions.ConnectionError(
                f"Redis did not answer in time; not retried for {self.seconds:g} s"
            )

    def trip(self) -> None:
        with self._lock:
            self._until = time.monotonic() + self.seconds


def _fail_fast_connection(breaker: _Breaker, base: type = redis.Connection) -> type:
    """A Connection class whose timeouts open `breaker`, and which refuses while it is open."""

    class FailFastConnection(base):
        def connect(self):
            breaker.check()
            try:
                return super().connect()
            except redis.exceptions.TimeoutError:
                breaker.trip()
                raise

        def send_packed_command(self, command, check_health=True):
            breaker.check()
            try:
                return super().send_packed_command(command, check_health)
            except redis.exceptions.TimeoutError:
                breaker.trip()
                raise

        def read_response(self, *args, **kwargs):
            try:
                return super().read_response(*args, **kwargs)
            except redis.exceptions.TimeoutError:
                breaker.trip()
                raise

    return FailFastConnection


def client_options(timeout: float | None = None) -> dict[str, Any]:
    """Keyword arguments shared by every client we build (plain, Sentinel, Cluster)."""
    return {
        "socket_timeout": settings.REDIS_SOCKET_TIMEOUT if timeout is None else timeout,
        "socket_connect_timeout": (
            settings.REDIS_CONNECT_TIMEOUT if timeout is None else min(timeout, 1.0)
        ),
        # No blind retries: a timed-out write may have been applied; the caller gets an error.
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 30,
        "decode_responses": True,
    }


def make_redis_client(url: str, timeout: float | None = None) -> redis.Redis:
    """A fail-fast client for one Redis server named by `url`."""
    breaker = _Breaker(settings.REDIS_BREAKER_SECONDS)
    return redis.Redis.from_url(
        url, connection_class=_fail_fast_connection(breaker), **client_options(timeout)
    )


def make_sentinel_client(
    sentinels: list[tuple[str, int]], master: str, url: str | None = None
) -> redis.Redis:
    """A fail-fast client for the primary the sentinels name (it follows failovers)."""
    from redis.sentinel import Sentinel, SentinelManagedConnection

    parsed = redis.connection.parse_url(url) if url else {}
    options = client_options()
    sentinel = Sentinel(
        sentinels,
        sentinel_kwargs={
            "socket_timeout": options["socket_timeout"],
            "socket_connect_timeout": options["socket_connect_timeout"],
        },
    )
    breaker = _Breaker(settings.REDIS_BREAKER_SECONDS)
    return sentinel.master_for(
        master,
        connection_class=_fail_fast_connection(breaker, SentinelManagedConnection),
        db=parsed.get("db", 0),
        password=parsed.get("password"),
        username=parsed.get("username"),
        **options,
    )


def make_cluster_client(url: str):
    """A client for the Redis Cluster that `url` names one node of."""
    from redis.cluster import RedisCluster

    # MOVED/ASK redirects (resharding, failover) are followed whatever `retry` says: that is
    # routing. Connection errors and timeouts are not retried, as for a single server.
    return RedisCluster.from_url(url, **client_options())


def build_client():
    """The client the settings ask for: Sentinel, Cluster or a plain server."""
    if settings.REDIS_SENTINELS:
        return make_sentinel_client(
            settings.REDIS_SENTINELS, settings.REDIS_SENTINEL_MASTER, settings.REDIS_URL
        )
    if settings.REDIS_CLUSTER:
        return make_cluster_client(settings.REDIS_URL)
    return make_redis_client(settings.REDIS_URL)


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """One client (and connection pool) per process."""
    return build_client()


class ReplicaWaitFailed(redis.exceptions.ConnectionError):
    """A write reached the primary but not enough replicas in time: it may be lost on failover
    (a ConnectionError, so the store answers 503 like any other Redis failure)."""


def execute_durably(pipe, raise_on_error: bool = True) -> list:
    """Run a (non-transactional or MULTI) pipeline of writes, then, when REDIS_WAIT_REPLICAS
    is set, wait on the same connection for that many replicas to have them (WAIT n ms).

    Returns the pipeline's results (without WAIT's; with raise_on_error False, a failed call's
    exception in its place). Raises ReplicaWaitFailed when too few
    replicas confirmed in REDIS_WAIT_TIMEOUT_MS: the caller answers 503 and does not claim
    the write is safe. This is the hook the store calls for writes that must survive a failover.
    """
    wanted = settings.REDIS_WAIT_REPLICAS
    if wanted <= 0:
        return pipe.execute(raise_on_error)
    pipe.execute_command("WAIT", wanted, settings.REDIS_WAIT_TIMEOUT_MS)
    results = pipe.execute(raise_on_error)
    confirmed = results.pop()
    if int(confirmed) < wanted:
        raise ReplicaWaitFailed(
            f"write confirmed by {confirmed} of {wanted} replica(s) "
            f"within {settings.REDIS_WAIT_TIMEOUT_MS} ms"
        )
    return results


def get_store_redis():
    """The session store's client: the same fail-fast, never-retrying client as get_redis()
    (plain, Sentinel or Cluster, as the settings say), since a write whose reply was lost may
    have been applied (a blind EVALSHA retry would apply it twice). One per topology, per
    process, so a test that points the settings elsewhere gets a client for that."""
    return _store_client(
        settings.REDIS_URL,
        settings.REDIS_CLUSTER,
        tuple(settings.REDIS_SENTINELS or ()),
        settings.REDIS_SENTINEL_MASTER,
    )


@lru_cache(maxsize=4)
def _store_client(url: str, cluster: bool, sentinels: tuple, master: str):
    return build_client()


def key(*parts: str) -> str:
    """A Redis key under this deployment's prefix: key("s", id) -> "fs:s:<id>"."""
    return ":".join((settings.SESSION_REDIS_PREFIX, *parts))
