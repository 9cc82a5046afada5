"""API keys for the REST API and MCP over HTTP: create (secret shown once), verify, revoke.

A key reads `fs_<prefix>_<secret>`. Only the prefix (to find the row) and a SHA-256 of the whole
key are stored; the key itself is never stored or logged.
"""

import hashlib
import hmac
import re
import secrets
import time
from datetime import timedelta

from django.db import DatabaseError
from django.utils import timezone

from sessions_app import validation
from sessions_app.exceptions import InvalidInput
from sessions_app.models import ApiKey

KEY_PREFIX = "fs"
PREFIX_BYTES = 6  # 12 hex characters: plenty to keep prefixes unique, short enough to show
SECRET_BYTES = 32
# Writing last_used_at on every request would turn each read into a write; a minute is precise
# enough to tell a key in use from a forgotten one.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_NAME_LENGTH = validation._max_length(ApiKey, "name")
# How long a verified key stays usable while Postgres is down (see authenticate).
OUTAGE_GRACE = timedelta(minutes=15)
# SHA-256 of a verified key -> (key, when verified); read only during a database outage.
_verified: dict[str, tuple[ApiKey, float]] = {}

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

    While Postgres is unreachable, a key this process verified in the last OUTAGE_GRACE is
    still accepted, so clients keep writing live sessions through a database outage; any other
    key raises the DatabaseError (the API answers 503).
    """
    if not isinstance(raw_key, str):
        return None
    raw_key = raw_key.strip()
    match = _KEY_RE.match(raw_key)
    if not match:
        return None
    digest = hash_key(raw_key)
    try:
        key = _verify(digest, match.group(1))
    except DatabaseError:
        remembered = _verified.get(digest)
        if remembered and time.monotonic() - remembered[1] < OUTAGE_GRACE.total_seconds():
            return remembered[0]
        raise
    if key is not None:
        if len(_verified) > 10_000:
            _verified.clear()
        _verified[digest] = (key, time.monotonic())
    return key


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
    """Revoke the key: every later request with it is refused. Revoking twice keeps the first
    time."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=key.revoked_at)
        from sessions_app import audit  # a signal cannot see a queryset update

        audit.record(
            "revoke", "api_key", key.pk, object_repr=str(key), after={"revoked_at": key.revoked_at}
        )
    return key
