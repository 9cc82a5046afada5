"""The Redis key layout of live sessions: the only module that knows it (docs/ARCHITECTURE.md).

Per session (P = settings.SESSION_REDIS_PREFIX):
  P:s:<id>       hash   the session's fields and counters
  P:s:<id>:ev    list   timeline events as JSON, in order
  P:s:<id>:ctx   hash   context key -> JSON value
  P:s:<id>:ir    hash   intermediate result key -> JSON value
  P:s:<id>:eid   set    event ids already applied (duplicates are dropped)
Indexes:
  P:idx:due       zset  id by expiry (0 once ended): what the archiver takes next
  P:idx:activity  zset  active id by last activity
  P:idx:user:<u>  zset  id by creation, per user
  P:idx:type:<t>  zset  active id by creation, per session type
  P:idem:<hash>   string  "<id>|<body hash>" of a create under an idempotency key

Ids may contain ':', so a session's own keys could collide with another's sub-keys
("x:ev" vs x's timeline); create refuses an id when any of its five keys already exists.
"""

from __future__ import annotations

import hashlib

from django.conf import settings

SUFFIXES = ("", ":ev", ":ctx", ":ir", ":eid")


def prefix() -> str:
    return settings.SESSION_REDIS_PREFIX


def meta(session_id: str) -> str:
    return f"{prefix()}:s:{session_id}"


def session_keys(session_id: str) -> tuple[str, str, str, str, str]:
    """(meta, events, context, results, event ids) of one session."""
    base = meta(session_id)
    return base, f"{base}:ev", f"{base}:ctx", f"{base}:ir", f"{base}:eid"


def due() -> str:
    return f"{prefix()}:idx:due"


def activity() -> str:
    return f"{prefix()}:idx:activity"


def user(user_id: str) -> str:
    return f"{prefix()}:idx:user:{user_id}"


def session_type(name: str) -> str:
    return f"{prefix()}:idx:type:{name}"


def idempotency(scope: str, key: str) -> str:
    """One key per (scope, idempotency key); hashed so neither part can forge the other."""
    digest = hashlib.sha256(f"{scope}\x00{key}".encode()).hexdigest()[:40]
    return f"{prefix()}:idem:{digest}"
