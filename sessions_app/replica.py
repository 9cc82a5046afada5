"""Read replica routing: the read-only selectors read from DATABASE_REPLICA_URL when set.

Selectors for analytics, history, exports and user pages run inside `replica_reads()` (or are
decorated with `@reads_replica`); their ORM queries then go to the `replica` alias through
`ReplicaRouter`, and their raw SQL takes `read_connection()`. Everything else, writes and the
reads that must see a write just made (a session's page after its archive, the jobs), uses the
primary. Without a replica configured, every alias here is `default`.
"""

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from django.db import connections

REPLICA = "replica"
_replica_reads: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "replica_reads", default=False
)

F = TypeVar("F", bound=Callable[..., Any])


def replica_alias() -> str:
    """`replica` when DATABASE_REPLICA_URL is set, else `default`."""
    return REPLICA if REPLICA in settings.DATABASES else "default"


def read_alias() -> str:
    """The alias the current code should read from."""
    return replica_alias() if _replica_reads.get() else "default"


def read_connection():
    """The connection for a selector's raw SQL (the replica inside replica_reads())."""
    return connections[read_alias()]


@contextlib.contextmanager
def replica_reads() -> Iterator[None]:
    """Reads in this block (ORM and read_connection()) go to the replica, if there is one."""
    token = _replica_reads.set(True)
    try:
        yield
    finally:
        _replica_reads.reset(token)


def reads_replica(func: F) -> F:
    """Run a read-only selector inside replica_reads()."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with replica_reads():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class ReplicaRouter:
    """ORM reads inside replica_reads() go to the replica; writes and migrations to default."""

    def db_for_read(self, model, **hints):
        return read_alias() if _replica_reads.get() else None

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        return True  # one database, two copies

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "default"
