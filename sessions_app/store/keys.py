"""The Redis key layout of live sessions: the only module that knows it (docs/ARCHITECTURE.md).

Sessions are spread over REDIS_SHARDS shards; shard = crc32(session id) mod REDIS_SHARDS, so a
session's shard is recoverable from its id alone (caller-chosen ids included). Every key of a
shard carries the hash tag `{<shard>}`, so on a Redis Cluster one session's keys and the index
entries its scripts touch share one slot, and one Lua call stays atomic. With one shard (the
default: a single Redis, the embedded path) everything is in shard 0.

Per session (P = settings.SESSION_REDIS_PREFIX, n = its shard):
  P:{n}:s:<id>       hash   the session's fields and counters
  P:{n}:s:<id>:ev    list   timeline events as JSON, in order
  P:{n}:s:<id>:ctx   hash   context key -> JSON value
  P:{n}:s:<id>:ir    hash   intermediate result key -> JSON value
  P:{n}:s:<id>:eid   set    event ids already applied (duplicates are dropped)
Indexes, one set per shard (global questions ask every shard and merge):
  P:{n}:idx:due       zset  id by expiry (0 once ended): what the archiver takes next
  P:{n}:idx:activity  zset  active id by last activity
  P:{n}:idx:user:<u>  zset  id by creation, per user
  P:{n}:idx:type:<t>  zset  active id by creation, per session type
  P:{n}:idem:<hash>   string  "<id>|<body hash>" of a create under an idempotency key; n is
                      the key's own shard (idempotency_shard), where create looks it up

Ids may contain ':', so a session's own keys could collide with another's sub-keys
("x:ev" vs x's timeline); create refuses an id when any of its five keys already exists.
"""

from __future__ import annotations

import hashlib
import zlib

from django.conf import settings

SUFFIXES = ("", ":ev", ":ctx", ":ir", ":eid")


def prefix() -> str:
    return settings.SESSION_REDIS_PREFIX


def shard_count() -> int:
    """How many shards the live sessions are spread over (REDIS_SHARDS)."""
    return settings.REDIS_SHARDS


def shards() -> range:
    """Every shard number, for the questions that fan out."""
    return range(shard_count())


def shard_of(session_id: str) -> int:
    """The shard of a session: a stable hash of its id (the same in every process)."""
    count = shard_count()
    return zlib.crc32(session_id.encode()) % count if count > 1 else 0


def new_id_in(shard: int) -> str:
    """A fresh session id (UUIDv7, as new_session_id) whose shard is `shard`: an idempotent
    create keeps its idempotency key and the session in one slot (expected REDIS_SHARDS draws)."""
    from sessions_app.domain import new_session_id

    while True:
        candidate = new_session_id()
        if shard_of(candidate) == shard:
            return candidate


def _base(shard: int) -> str:
    return f"{prefix()}:{{{shard}}}"


def meta(session_id: str) -> str:
    return _meta(_base(shard_of(session_id)), session_id)


def _meta(base: str, session_id: str) -> str:
    return f"{base}:s:{session_id}"


def session_keys(session_id: str) -> tuple[str, str, str, str, str]:
    """(meta, events, context, results, event ids) of one session."""
    base = meta(session_id)
    return base, f"{base}:ev", f"{base}:ctx", f"{base}:ir", f"{base}:eid"


def apply_keys(session_id: str) -> list[str]:
    """The keys of the APPLY script (scripts.APPLY): meta, events, context, results, the
    shard's activity index, event ids. The settings are read once: it runs for every event."""
    base = _base(shard_of(session_id))
    meta = _meta(base, session_id)
    return [meta, f"{meta}:ev", f"{meta}:ctx", f"{meta}:ir", _activity(base), f"{meta}:eid"]


def due(shard: int) -> str:
    return f"{_base(shard)}:idx:due"


def activity(shard: int) -> str:
    return _activity(_base(shard))


def _activity(base: str) -> str:
    return f"{base}:idx:activity"


def user(shard: int, user_id: str) -> str:
    return f"{_base(shard)}:idx:user:{user_id}"


def session_type(shard: int, name: str) -> str:
    return f"{_base(shard)}:idx:type:{name}"


def _idempotency_digest(scope: str, key: str) -> str:
    # Hashed so neither part can forge the other.
    return hashlib.sha256(f"{scope}\x00{key}".encode()).hexdigest()[:40]


def idempotency_shard(scope: str, key: str) -> int:
    """The shard an idempotency key lives in: a stable hash of the key itself, so a retry
    finds it before it knows the session's id."""
    count = shard_count()
    return int(_idempotency_digest(scope, key)[:8], 16) % count if count > 1 else 0


def idempotency(scope: str, key: str) -> str:
    """One key per (scope, idempotency key), in its own shard (idempotency_shard)."""
    shard = idempotency_shard(scope, key)
    return f"{_base(shard)}:idem:{_idempotency_digest(scope, key)}"


def placeholder(session_id: str) -> str:
    """A key in the session's slot that never exists: fills a KEYS position left unused."""
    return f"{meta(session_id)}:none"


def same_shard(key_a: str, key_b: str) -> bool:
    """Whether two of our keys carry the same hash tag (one slot on a Cluster)."""
    return _tag(key_a) == _tag(key_b)


def _tag(name: str) -> str:
    start = name.find("{")
    return name[start + 1 : name.find("}", start)] if start >= 0 else ""
