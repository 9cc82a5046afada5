"""Retention dry run: what the next retention run would delete if a policy change were saved."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, F, Sum
from django.utils import timezone

from sessions_app.models import RetentionPolicy, Session, SessionType


@dataclass(frozen=True)
class TypePreview:
    session_type: str
    label: str
    retention_now: int
    retention_new: int
    sessions: int
    events: int


def _retention_in_force(rows: list[RetentionPolicy]) -> dict[str, int]:
    by_type = {row.session_type: row for row in rows}
    base = by_type.get("")
    # A blank (or missing) global value means the setting, as in policies.py.
    fallback = base.retention_days if base is not None else None
    if fallback is None:
        fallback = RetentionPolicy.global_defaults_from_settings()["retention_days"]
    result = {}
    for session_type in SessionType.values:
        own = by_type.get(session_type)
        value = own.retention_days if own is not None else None
        result[session_type] = value if value is not None else fallback
    return result


def preview(policy: RetentionPolicy, now: datetime | None = None) -> list[TypePreview]:
    """The types whose retention `policy` (unsaved) shortens, with the archived sessions and
    events the next retention run would delete under it (one indexed count per type)."""
    now = now or timezone.now()
    saved = list(RetentionPolicy.objects.all())
    current = _retention_in_force(saved)
    others = [row for row in saved if row.session_type != policy.session_type]
    proposed = _retention_in_force([*others, policy])
    result = []
    for session_type, label in SessionType.choices:
        if proposed[session_type] >= current[session_type]:
            continue
        cutoff = now - timedelta(days=proposed[session_type])
        totals = Session.objects.filter(
            session_type=session_type, archived_at__lt=cutoff
        ).aggregate(
            sessions=Count("id"),
            events=Sum(F("query_count") + F("message_count") + F("tool_call_count")),
        )
        result.append(
            TypePreview(
                session_type,
                label,
                current[session_type],
                proposed[session_type],
                totals["sessions"] or 0,
                totals["events"] or 0,
            )
        )
    return result
