"""Effective retention policy per session type, cached in each process.

Every save or delete of a policy row bumps a version number in Redis once it commits; each
process compares its cache's version with Redis's at most every VERSION_CHECK_SECONDS, so a
change reaches every process on every host within about that. Without Redis the cache is
reloaded every CACHE_SECONDS instead.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from sessions_app.models import RetentionPolicy, SessionType
from sessions_app.redis_client import get_redis, key
from sessions_app.validation import MAX_EVENTS_PER_SESSION

logger = logging.getLogger(__name__)

# Under 1 s (the promise to admins) and cheap: one GET per process at most this often.
VERSION_CHECK_SECONDS = 0.5
# The fallback when Redis can't say: short enough for a change to arrive within seconds,
# long enough that a store write never waits on Postgres.
CACHE_SECONDS = 5.0
# Even with an unchanged version, reload this often (rows changed without signals, e.g. SQL).
MAX_CACHE_SECONDS = 60.0
_cache: dict[str, "EffectivePolicy"] = {}
_cache_loaded_at = 0.0
_cache_version: str | None = None
_version_checked_at = 0.0


def _version_key() -> str:
    return key("policy", "version")


def _redis_version() -> str | None:
    """The policies' version in Redis ("0" before any change), None when Redis can't say."""
    try:
        return str(get_redis().get(_version_key()) or "0")
    except Exception as exc:  # noqa: BLE001 - the time-based reload covers it
        logger.debug("policy version unavailable: %s", exc)
        return None


@dataclass(frozen=True)
class EffectivePolicy:
    session_type: str
    default_ttl_hours: int
    max_ttl_hours: int
    idle_timeout_minutes: int
    retention_days: int
    max_queries_per_session: int
    cleanup_interval_minutes: int
    overridden: tuple[str, ...] = ()  # fields the type's own row sets
    # Caps; 0 means none.
    max_events_per_session: int = 0
    max_state_bytes: int = 0
    max_live_sessions_per_user: int = 0
    max_live_sessions: int = 0
    # Where each field's value comes from: "type", "global" or the SESSION_* setting's name.
    sources: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # A session's cost and token sums must fit their columns, which validation sizes for
        # at most MAX_EVENTS_PER_SESSION events: no policy (nor "no cap") may allow more.
        cap = self.max_events_per_session
        if not cap or cap > MAX_EVENTS_PER_SESSION:
            object.__setattr__(self, "max_events_per_session", MAX_EVENTS_PER_SESSION)


def ensure_global_policy() -> RetentionPolicy:
    """The global row, created blank (every field from its SESSION_* setting) when missing."""
    policy, _ = RetentionPolicy.objects.get_or_create(session_type="")
    return policy


def global_effective_policy(row: RetentionPolicy | None = None) -> EffectivePolicy:
    """The global row's values with blank fields filled from the SESSION_* settings."""
    return _build({"": row or ensure_global_policy()})[SessionType.values[0]]


def _load() -> dict[str, EffectivePolicy]:
    return effective_policies_from(RetentionPolicy.objects.all())


def effective_policies_from(rows) -> dict[str, EffectivePolicy]:
    """{session_type: EffectivePolicy} from these rows (saved or not), uncached: what would be in
    force if they were the saved ones. Without a global row, the saved (or a blank) one counts."""
    by_type = {row.session_type: row for row in rows}
    if "" not in by_type:
        by_type[""] = ensure_global_policy()
    return _build(by_type)


def _build(rows: dict[str, RetentionPolicy]) -> dict[str, EffectivePolicy]:
    """Each type's policy: its own row's fields over the global row's over the settings."""
    base = rows[""]
    defaults = RetentionPolicy.global_defaults_from_settings()
    base_values, base_sources = {}, {}
    for name in (*RetentionPolicy.POLICY_FIELDS, *RetentionPolicy.CAP_FIELDS):
        value = getattr(base, name)
        if value is not None:
            base_values[name], base_sources[name] = value, "global"
        elif name in defaults:
            base_values[name], base_sources[name] = defaults[name], RetentionPolicy.SETTINGS[name]
        else:
            base_values[name], base_sources[name] = 0, "none"
    result = {}
    for session_type in SessionType.values:
        override = rows.get(session_type)
        values, sources = dict(base_values), dict(base_sources)
        overridden = []
        if override is not None:
            for name in values:
                value = getattr(override, name)
                if value is not None:
                    values[name], sources[name] = value, "type"
                    overridden.append(name)
        result[session_type] = EffectivePolicy(
            session_type,
            **values,
            overridden=tuple(overridden),
            sources=tuple(sources.items()),
        )
    return result


def all_effective_policies() -> dict[str, EffectivePolicy]:
    """{session_type: EffectivePolicy} for every type, from a cache that follows every change
    (in any process) within VERSION_CHECK_SECONDS."""
    global _cache, _cache_loaded_at, _cache_version, _version_checked_at
    now = time.monotonic()
    if _cache and now - _version_checked_at < VERSION_CHECK_SECONDS:
        return _cache
    _version_checked_at = now
    version = _redis_version()
    age = now - _cache_loaded_at
    if _cache and version is not None and version == _cache_version and age < MAX_CACHE_SECONDS:
        return _cache
    if _cache and version is None and age < CACHE_SECONDS:
        return _cache
    try:
        _cache = _load()
        _cache_version = version
    except DatabaseError as exc:
        # Postgres down: live writes must keep working, on the policies this process last
        # saw, else on the settings' defaults; the next try comes after CACHE_SECONDS.
        logger.warning(
            "retention policies unavailable, using %s: %s",
            "the cached ones" if _cache else "the settings' defaults",
            exc,
        )
        _cache = _cache or _defaults_from_settings()
    _cache_loaded_at = now
    return _cache


def _defaults_from_settings() -> dict[str, EffectivePolicy]:
    values: dict[str, Any] = RetentionPolicy.global_defaults_from_settings()
    return {name: EffectivePolicy(name, **values) for name in SessionType.values}


def get_effective_policy(session_type: str) -> EffectivePolicy:
    """The policy in force for one session type (its overrides over the global default)."""
    return all_effective_policies()[session_type]


def clear_policy_cache() -> None:
    """Forget this process's cache: the next read loads the policies again."""
    global _cache, _cache_version
    _cache, _cache_version = {}, None


def _bump_version() -> None:
    try:
        get_redis().incr(_version_key())
    except Exception as exc:  # noqa: BLE001 - other processes reload within CACHE_SECONDS
        logger.warning("policy change not announced in Redis: %s", exc)


def _changes_nothing(instance: RetentionPolicy, created: bool) -> bool:
    """A global row just created from the settings' defaults (ensure_global_policy): every
    process without the row already uses exactly those values."""
    if not created or not instance.is_global:
        return False
    defaults = RetentionPolicy.global_defaults_from_settings()
    return all(getattr(instance, name) == value for name, value in defaults.items())


@receiver([post_save, post_delete], sender=RetentionPolicy)
def _policy_changed(instance: RetentionPolicy, created: bool = False, **kwargs):
    clear_policy_cache()
    if _changes_nothing(instance, created):
        return
    # After the commit, so no process can reload the old rows under the new version.
    transaction.on_commit(_bump_version)


async def aall_effective_policies() -> dict[str, EffectivePolicy]:
    """all_effective_policies() for async code: a fresh cache costs nothing; otherwise the
    same version check and load run in a worker thread (never SynchronousOnlyOperation, and
    the event loop does not wait on Redis or Postgres)."""
    if _cache and time.monotonic() - _version_checked_at < VERSION_CHECK_SECONDS:
        return _cache
    return await sync_to_async(all_effective_policies, thread_sensitive=False)()
