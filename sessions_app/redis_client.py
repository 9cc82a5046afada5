"""The shared Redis connection pool and key naming."""

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """One client (and connection pool) per process, with short timeouts so failures are fast."""
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
        health_check_interval=30,
        decode_responses=True,
    )


def key(*parts: str) -> str:
    """A Redis key under this deployment's prefix: key("s", id) -> "fs:s:<id>"."""
    return ":".join((settings.SESSION_REDIS_PREFIX, *parts))
