"""The shared Redis connection pool and key naming.

Clients fail fast, for a hung Redis (SIGSTOP, a dead host: connections open, nothing answers)
as for a refused one: short connect and read timeouts, no automatic retry (a resent write could
be applied twice), and a breaker: after a timeout, the process stops asking that Redis for
REDIS_BREAKER_SECONDS, so a page that makes ten Redis calls waits for one timeout, not ten.
"""

import threading
import time
from functools import lru_cache

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


def _fail_fast_connection(breaker: _Breaker) -> type[redis.Connection]:
    """A Connection class whose timeouts open `breaker`, and which refuses while it is open."""

    class FailFastConnection(redis.Connection):
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


def client_options(timeout: float | None = None) -> dict:
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


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """One client (and connection pool) per process."""
    return make_redis_client(settings.REDIS_URL)


def key(*parts: str) -> str:
    """A Redis key under this deployment's prefix: key("s", id) -> "fs:s:<id>"."""
    return ":".join((settings.SESSION_REDIS_PREFIX, *parts))
