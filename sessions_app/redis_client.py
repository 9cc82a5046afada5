"""The shared Redis connection pool and key naming."""

from functools import lru_cache

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry


def make_redis_client(url: str, timeout: float | None = None) -> redis.Redis:
    """A client that fails fast: short timeouts, one immediate retry (for a stale pooled socket)."""
    timeout = settings.REDIS_SOCKET_TIMEOUT if timeout is None else timeout
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
        decode_responses=True,
    )


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """One client (and connection pool) per process."""
    return make_redis_client(settings.REDIS_URL)


def key(*parts: str) -> str:
    """A Redis key under this deployment's prefix: key("s", id) -> "fs:s:<id>"."""
    return ":".join((settings.SESSION_REDIS_PREFIX, *parts))
