"""Effective retention policy per session type, cached briefly in each process."""

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from sessions_app.models import RetentionPolicy, SessionType
from sessions_app.validation import MAX_EVENTS_PER_SESSION

logger = logging.getLogger(__name__)

# Short enough that an admin's change reaches every worker within seconds, long enough that a
# store write never waits on Postgres.
CACHE_SECONDS = 5.0
_cache: dict[str, "EffectivePolicy"] = {}
_cache_loaded_at = 0.0


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
    """{session_type: EffectivePolicy} for every type, from a cache refreshed every few seconds."""
    global _cache, _cache_loaded_at
    if not _cache or time.monotonic() - _cache_loaded_at > CACHE_SECONDS:
        try:
            _cache = _load()
        except DatabaseError as exc:
            # Postgres down: live writes must keep working, on the policies this process last
            # saw, else on the settings' defaults; the next try comes after CACHE_SECONDS.
            logger.warning(
                "retention policies unavailable, using %s: %s",
                "the cached ones" if _cache else "the settings' defaults",
                exc,
            )
            _cache = _cache or _defaults_from_settings()
        _cache_loaded_at = time.monotonic()
    return _cache


def _defaults_from_settings() -> dict[str, EffectivePolicy]:
    values: dict[str, Any] = RetentionPolicy.global_defaults_from_settings()
    return {name: EffectivePolicy(name, **values) for name in SessionType.values}


def get_effective_policy(session_type: str) -> EffectivePolicy:
    """The policy in force for one session type (its overrides over the global default)."""
    return all_effective_policies()[session_type]


def clear_policy_cache() -> None:
    global _cache_loaded_at
    _cache_loaded_at = 0.0


@receiver([post_save, post_delete], sender=RetentionPolicy)
def _policy_changed(**kwargs):
    clear_policy_cache()


async def aall_effective_policies() -> dict[str, EffectivePolicy]:
    """all_effective_policies() for async code: a warm cache costs nothing, a cold one is
    loaded through the async ORM (never SynchronousOnlyOperation in an event loop)."""
    global _cache, _cache_loaded_at
    if _cache and time.monotonic() - _cache_loaded_at <= CACHE_SECONDS:
        return _cache
    try:
        rows = [row async for row in RetentionPolicy.objects.all()]
        if not any(row.session_type == "" for row in rows):
            global_row, _ = await RetentionPolicy.objects.aget_or_create(session_type="")
            rows.append(global_row)
        _cache = _build({row.session_type: row for row in rows})
    except DatabaseError as exc:
        logger.warning("retention policies unavailable: %s", exc)
        _cache = _cache or _defaults_from_settings()
    _cache_loaded_at = time.monotonic()
    return _cache
