"""API keys for the REST API and MCP over HTTP: create (secret shown once), verify, revoke.

A key reads `fs_<prefix>_<secret>`. Only the prefix (to find the row) and a SHA-256 of the whole
key are stored; the key itself is never stored or logged.

Keys verified in Postgres are also remembered in Redis (`P:apikey:<sha256>`, shared by every
process and host) for OUTAGE_GRACE. A process reads a key from there for a minute after it
verified it in Postgres (a request costs one Redis GET, not two Postgres round trips), and
while Postgres is unreachable.
Revoking (or deleting) a key overwrites that entry with a tombstone in the same step, and a
verification that raced the revocation cannot overwrite the tombstone (Lua below), so a revoked
key never works again, during an outage included.
"""

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from datetime import timedelta

from django.db import DatabaseError, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from sessions_app import validation
from sessions_app.exceptions import InvalidInput, StoreUnavailable
from sessions_app.models import ApiKey
from sessions_app.redis_client import get_redis
from sessions_app.redis_client import key as redis_key

logger = logging.getLogger(__name__)

KEY_PREFIX = "fs"
PREFIX_BYTES = 6  # 12 hex characters: plenty to keep prefixes unique, short enough to show
SECRET_BYTES = 32
# Writing last_used_at on every request would turn each read into a write; a minute is precise
# enough to tell a key in use from a forgotten one.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_NAME_LENGTH = validation._max_length(ApiKey, "name")
# How long a verified key stays usable while Postgres is down (see authenticate).
OUTAGE_GRACE = timedelta(minutes=15)
# A tombstone outlives any entry written before it, whatever the clocks.
TOMBSTONE_TTL = 2 * OUTAGE_GRACE
REVOKED = "revoked"
# This process refreshes a key's Redis entry at most this often (not one write per request).
_REFRESH_SECONDS = 60.0
_refreshed: dict[str, float] = {}  # digest -> monotonic time of the last Redis write

# Remember a verified key unless a tombstone is there (a revocation that raced this check).
_REMEMBER_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

_KEY_RE = re.compile(rf"^{KEY_PREFIX}_([0-9a-f]{{{PREFIX_BYTES * 2}}})_[A-Za-z0-9_\-]{{43,}}$")


def hash_key(raw_key: str) -> str:
    """SHA-256 hex digest of a whole key (the only form of it that is stored)."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _clean_scopes(scopes) -> list[str]:
    if isinstance(scopes, str) or not isinstance(scopes, list | tuple | set | frozenset):
        raise InvalidInput("scopes", "must be a list of scopes")
    allowed = ApiKey.Scope.values
    result = []
    for scope in scopes:
        scope = getattr(scope, "value", scope)
        if scope not in allowed:
            raise InvalidInput("scopes", f"must each be one of {', '.join(allowed)}, not {scope!r}")
        if scope not in result:
            result.append(scope)
    if not result:
        raise InvalidInput("scopes", "needs at least one scope")
    return sorted(result)


def create_api_key(name: str, scopes, created_by=None) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the secret, which is shown once and never again."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name", "is required")
    name = name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput("name", f"must be at most {MAX_NAME_LENGTH} characters")
    scopes = _clean_scopes(scopes)
    while True:
        prefix = secrets.token_hex(PREFIX_BYTES)
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    raw_key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    key = ApiKey.objects.create(
        name=name,
        prefix=prefix,
        hashed_secret=hash_key(raw_key),
        scopes=scopes,
        created_by=created_by,
    )
    return key, raw_key


def authenticate(raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key`, else None; records its use at most once a minute.

    Each process checks a key in Postgres at most once a minute (_REFRESH_SECONDS), which
    refreshes its Redis entry; in between, every request reads that entry (one GET), which a
    revocation or deletion replaces with a tombstone at once: a revoked key is refused from the
    next request on, in every process.

    While Postgres is unreachable, a key verified (by any process) in the last OUTAGE_GRACE and
    not revoked since is still accepted from Redis, so clients keep writing live sessions
    through a database outage; any other key raises the DatabaseError (the API answers 503).
    """
    if not isinstance(raw_key, str):
        return None
    raw_key = raw_key.strip()
    match = _KEY_RE.match(raw_key)
    if not match:
        return None
    digest = hash_key(raw_key)
    if time.monotonic() - _refreshed.get(digest, -_REFRESH_SECONDS) < _REFRESH_SECONDS:
        remembered = _remembered(digest)  # None: revoked, deleted, expired or Redis down
        if remembered is not None:
            return remembered
    try:
        key = _verify(digest, match.group(1))
    except DatabaseError:
        remembered = _remembered(digest)
        if remembered is not None:
            return remembered
        raise
    if key is not None:
        _remember(digest, key)
    return key


def _cache_key(digest: str) -> str:
    return redis_key("apikey", digest)


def _remember(digest: str, key: ApiKey) -> None:
    """Write the verified key to Redis (at most once a minute per process; best effort)."""
    now = time.monotonic()
    if now - _refreshed.get(digest, -_REFRESH_SECONDS) < _REFRESH_SECONDS:
        return
    value = json.dumps({"id": key.pk, "name": key.name, "prefix": key.prefix, "scopes": key.scopes})
    try:
        get_redis().eval(
            _REMEMBER_SCRIPT,
            1,
            _cache_key(digest),
            REVOKED,
            value,
            int(OUTAGE_GRACE.total_seconds()),
        )
    except Exception as exc:  # noqa: BLE001 - only the outage fallback is lost
        logger.warning("could not remember a verified API key in Redis: %s", exc)
        return
    if len(_refreshed) > 10_000:
        _refreshed.clear()
    _refreshed[digest] = now


def _remembered(digest: str) -> ApiKey | None:
    """The key as Redis remembers it (None: unknown, revoked, or Redis unreachable too)."""
    try:
        value = get_redis().get(_cache_key(digest))
    except Exception:  # noqa: BLE001 - nothing to fall back on: the caller re-raises
        return None
    if not value or value == REVOKED:
        return None
    data = json.loads(value)
    return ApiKey(
        pk=data["id"],
        name=data["name"],
        prefix=data["prefix"],
        scopes=data["scopes"],
        hashed_secret=digest,
    )


def _bury(digest: str) -> None:
    """Replace the key's Redis entry with a tombstone; raises StoreUnavailable if Redis fails."""
    _refreshed.pop(digest, None)
    try:
        ttl = int(TOMBSTONE_TTL.total_seconds())
        get_redis().set(_cache_key(digest), REVOKED, ex=ttl)
    except Exception as exc:
        raise StoreUnavailable(
            f"could not revoke the key's cached verification in Redis ({exc}); try again"
        ) from exc


def _verify(digest: str, prefix: str) -> ApiKey | None:
    try:
        key = ApiKey.objects.get(prefix=prefix)  # unique index on prefix
    except ApiKey.DoesNotExist:
        key = None
    # Compare even when the prefix is unknown so timing does not reveal which prefixes exist.
    expected = key.hashed_secret if key else "0" * 64
    if not hmac.compare_digest(digest, expected) or key is None:
        return None
    if key.revoked_at is not None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def has_scope(key: ApiKey, scope: str) -> bool:
    """Whether the key carries `scope` (read for reads, write for writes; neither implies the
    other)."""
    return scope in key.scopes


def revoke(key: ApiKey) -> ApiKey:
    """Revoke the key: every later request with it is refused, also from the outage cache.
    Revoking twice keeps the first time. Raises StoreUnavailable (nothing revoked) when Redis
    cannot take the tombstone."""
    first = key.revoked_at is None
    with transaction.atomic():
        revoked_at = key.revoked_at or timezone.now()
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=revoked_at)
        # Inside the transaction: when Redis fails, the revocation rolls back and is retried,
        # rather than leaving a revoked key usable from the cache during an outage.
        _bury(key.hashed_secret)
    key.revoked_at = revoked_at
    if first:
        from sessions_app import audit  # a signal cannot see a queryset update

        audit.record(
            "revoke", "api_key", key.pk, object_repr=str(key), after={"revoked_at": revoked_at}
        )
    return key


@receiver(post_delete, sender=ApiKey)
def _key_deleted(sender, instance: ApiKey, **kwargs) -> None:
    # A deleted key is revoked too (the delete's transaction fails if Redis does).
    _bury(instance.hashed_secret)
