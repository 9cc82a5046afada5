"""Retiring archived sessions: past their type's retention, or by id.

Past retention, whole archive days go at once: the tables are partitioned by archive day
(archive/partitions.py), and a day older than the LONGEST retention of any type is dropped
(DROP of its partitions: no row is deleted, the WAL stays in kB). Types with a shorter
retention lose their expired sessions in the days still kept by a bounded delete: raw SQL,
each batch in its own short transaction, never a Python-level cascade, never a long lock that
would stall the dashboard. A delete by id (admin, API) uses the same batches.
"""

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from sessions_app.archive import partitions
from sessions_app.policies import all_effective_policies
from sessions_app.rollups import unfold_sessions

logger = logging.getLogger(__name__)

# Sessions per retention / admin delete transaction: short enough never to stall the dashboard.
DELETE_BATCH_SIZE = 5000


def delete_archived_sessions(session_ids: Iterable, batch_size: int = DELETE_BATCH_SIZE) -> int:
    """Delete these archived sessions and their events in batches, and take them out of the
    daily rollups; the number of sessions."""
    ids = [str(session_id) for session_id in session_ids]
    deleted = 0
    for start in range(0, len(ids), batch_size):
        sessions, _ = _delete_batch(ids[start : start + batch_size], unfold=True)
        deleted += sessions
    return deleted


def delete_rows(
    cursor, ids: list, days: tuple[datetime, datetime] | None = None
) -> tuple[int, int]:
    """Delete these sessions, then their timelines, in the caller's transaction;
    (sessions, events).

    `days`: (earliest, latest) archived_at of the sessions if the caller knows it, so only
    those days' partitions are searched; else the sessions' own archive times bound the
    chunks' delete (no database foreign key orders the two deletes any more).
    """
    bound, params = "", []
    if days is not None:
        bound, params = " AND archived_at BETWEEN %s AND %s", list(days)
    # Events counted from the sessions' counters: no chunk is read (detoasted) to be deleted.
    cursor.execute(
        f"DELETE FROM sessions_app_session WHERE id = ANY(%s){bound} "  # noqa: S608 - constant
        "RETURNING query_count + message_count + tool_call_count, archived_at",
        [ids, *params],
    )
    rows = cursor.fetchall()
    if rows:
        cursor.execute(
            "DELETE FROM sessions_app_timelinechunk WHERE session_id = ANY(%s) "
            "AND archived_at BETWEEN %s AND %s",
            [ids, min(row[1] for row in rows), max(row[1] for row in rows)],
        )
    return len(rows), sum(row[0] for row in rows)


def _delete_batch(
    ids: list, unfold: bool = False, days: tuple[datetime, datetime] | None = None
) -> tuple[int, int]:
    """Delete one batch (sessions and their timelines) in its own short transaction.

    `unfold`: also take the sessions out of the daily rollups (a delete on request); retention
    leaves rollups alone, they outlive raw rows.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        if unfold:
            unfold_sessions(ids, cursor=cursor)
        return delete_rows(cursor, ids, days)


def retention_cutoffs(now: datetime | None = None) -> dict[str, datetime]:
    """{session_type: archived before this is past retention}."""
    now = now or timezone.now()
    return {
        session_type: now - timedelta(days=policy.retention_days)
        for session_type, policy in all_effective_policies().items()
    }


def delete_expired_rows(cutoffs: dict[str, datetime], batch_size: int = DELETE_BATCH_SIZE) -> dict:
    """The bounded delete: sessions of these types archived before their cutoff, with their
    timelines; {"sessions", "events", "batches"}.

    Walks the archived_at index in keyset order up to the latest cutoff (partitions before
    the first row are skipped); each batch deletes its expired sessions in a short transaction.
    """
    counts = {"sessions": 0, "events": 0, "batches": 0}
    latest = max(cutoffs.values(), default=None)
    after = (datetime.min.replace(tzinfo=UTC), "")  # "" sorts before every id
    while latest is not None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, archived_at, session_type FROM sessions_app_session "
                # The plain `archived_at >=` bound is what lets the archived_at index start
                # where the last batch stopped (and skip the partitions before it); the row
                # comparison breaks ties.
                "WHERE archived_at < %s AND archived_at >= %s AND (archived_at, id) > (%s, %s) "
                "AND session_type = ANY(%s) ORDER BY archived_at, id LIMIT %s",
                [latest, after[0], after[0], after[1], list(cutoffs), batch_size],
            )
            rows = cursor.fetchall()
        if not rows:
            break
        after = (rows[-1][1], rows[-1][0])
        doomed = [row for row in rows if row[1] < cutoffs[row[2]]]
        if doomed:
            days = (min(row[1] for row in doomed), max(row[1] for row in doomed))
            sessions, events = _delete_batch([row[0] for row in doomed], days=days)
            counts["sessions"] += sessions
            counts["events"] += events
            counts["batches"] += 1
        if len(rows) < batch_size:
            break
    return counts


def delete_old_archived_sessions(
    now: datetime | None = None, batch_size: int = DELETE_BATCH_SIZE
) -> dict:
    """Retire archived sessions older than their type's retention; what it did.

    1. Partition upkeep: create the days ahead, drop the days older than the longest
       retention of any type (their sessions and timelines, whole).
    2. The bounded delete (delete_expired_rows) of what is left past retention in the days
       kept: types with a shorter retention, and the day the horizon cuts through.
    Counts: sessions (both ways), dropped_days, dropped_sessions, events and batches (of the
    bounded delete), tombstones pruned.
    """
    if batch_size < 1:
        raise ValueError("batch_size: must be at least 1")
    now = now or timezone.now()
    policies = all_effective_policies()
    cutoffs = retention_cutoffs(now)
    longest = max(policy.retention_days for policy in policies.values())
    partitions.create_ahead(now)
    dropped = partitions.drop_expired(longest, now)
    counts = {
        "sessions": dropped["sessions"],
        "dropped_days": dropped["days"],
        "dropped_sessions": dropped["sessions"],
        "events": 0,
        "batches": 0,
    }
    # What is left past retention: shorter types' rows in the days kept, and the longest
    # type's in the one day the horizon cuts through (not whole, so not dropped).
    deleted = delete_expired_rows(cutoffs, batch_size)
    for name in ("sessions", "events", "batches"):
        counts[name] += deleted[name]
    from sessions_app.archive.tombstones import prune_tombstones

    counts["tombstones"] = prune_tombstones(now)
    if counts["sessions"]:
        logger.info("retired archived sessions past retention: %s", counts)
    return counts
