"""Which Redis errors mean "the live store is unavailable" (503), in one place."""

from __future__ import annotations

import redis
from django.db import DatabaseError

from sessions_app.exceptions import StoreUnavailable

# Replies of a Redis that is up but cannot take this call now (replica, loading, failover).
_UNAVAILABLE_REPLIES = (
    "NOREPLICAS",
    "LOADING",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "READONLY",
)


def unavailable(exc: BaseException) -> StoreUnavailable | None:
    """The StoreUnavailable for a Redis error that means "not now", else None (a bug)."""
    if isinstance(exc, redis.exceptions.RedisClusterException) and (
        "cannot be connected" in str(exc) or "CLUSTERDOWN" in str(exc)
    ):
        # No node of the cluster answers; a cross-slot call (a bug) stays an error.
        return StoreUnavailable(f"live session store (Redis Cluster) is unavailable: {exc}")
    if isinstance(exc, redis.exceptions.BusyLoadingError):
        return StoreUnavailable("live session store (Redis) is loading its data")
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return StoreUnavailable(f"live session store (Redis) is unavailable: {exc}")
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return StoreUnavailable("live session store (Redis) is a read-only replica right now")
    if isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(
        _UNAVAILABLE_REPLIES
    ):
        return StoreUnavailable(f"live session store (Redis) cannot write now: {exc}")
    return None


# What a front-end catches from a request: Redis failures and database errors.
REQUEST_ERRORS = (
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,
    DatabaseError,
)


def to_throw(exc: BaseException) -> BaseException:
    """What to throw back into the operation for a failed request: StoreUnavailable for a Redis
    that cannot answer now, the database's own error as is; any other Redis error is a bug and
    is raised."""
    if isinstance(exc, DatabaseError):
        return exc
    mapped = unavailable(exc)
    if mapped is None:
        raise exc
    mapped.__cause__ = exc
    return mapped
