"""The shared Redis connection pool and key naming."""

from functools import lru_cache

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry


def make_redis_client(url: str, timeout: float | None = None, retries: int = 1) -> redis.Redis:
    """A client that fails fast: short timeouts, `retries` immediate retries (for a stale pooled
    socket)."""
    timeout = settings.REDIS_SOCKET_TIMEOUT if timeout is None else timeout
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries),
        health_check_interval=30,
        decode_responses=True,
    )


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """One client (and connection pool) per process."""
    return make_redis_client(settings.REDIS_URL)


def get_store_redis() -> redis.Redis:
    """The session store's client: no retries, since a write whose reply was lost may have been
    applied (a blind EVALSHA retry would apply it twice). One per REDIS_URL, per process."""
    return _store_client(settings.REDIS_URL)


@lru_cache(maxsize=4)
def _store_client(url: str) -> redis.Redis:
    return make_redis_client(url, retries=0)


def key(*parts: str) -> str:
    """A Redis key under this deployment's prefix: key("s", id) -> "fs:s:<id>"."""
    return ":".join((settings.SESSION_REDIS_PREFIX, *parts))
