"""Deleting archived sessions: past their type's retention, or by id; in bounded batches.

Raw SQL, events first then sessions, each batch in its own short transaction: never a
Python-level cascade, never a long lock that would stall the dashboard.
"""

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

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


def delete_rows(cursor, ids: list) -> tuple[int, int]:
    """Delete these sessions' timelines, then the sessions, in the caller's transaction;
    (sessions, events)."""
    cursor.execute("DELETE FROM sessions_app_timelinechunk WHERE session_id = ANY(%s)", [ids])
    # Events counted from the sessions' counters: no chunk is read (detoasted) to be deleted.
    cursor.execute(
        "DELETE FROM sessions_app_session WHERE id = ANY(%s) "
        "RETURNING query_count + message_count + tool_call_count",
        [ids],
    )
    counts = [row[0] for row in cursor.fetchall()]
    return len(counts), sum(counts)


def _delete_batch(ids: list, unfold: bool = False) -> tuple[int, int]:
    """Delete one batch (events first, then sessions) in its own short transaction.

    `unfold`: also take the sessions out of the daily rollups (a delete on request); retention
    leaves rollups alone, they outlive raw rows.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        if unfold:
            unfold_sessions(ids, cursor=cursor)
        return delete_rows(cursor, ids)


def retention_cutoffs(now: datetime | None = None) -> dict[str, datetime]:
    """{session_type: archived before this is past retention}."""
    now = now or timezone.now()
    return {
        session_type: now - timedelta(days=policy.retention_days)
        for session_type, policy in all_effective_policies().items()
    }


def delete_old_archived_sessions(
    now: datetime | None = None, batch_size: int = DELETE_BATCH_SIZE
) -> dict:
    """Delete archived sessions older than their type's retention, in bounded batches.

    Walks the archived_at index once in keyset order up to the latest cutoff of any type; each
    batch deletes its expired sessions' events, then the sessions, in a short transaction.
    """
    if batch_size < 1:
        raise ValueError("batch_size: must be at least 1")
    cutoffs = retention_cutoffs(now)
    latest = max(cutoffs.values())
    counts = {"sessions": 0, "events": 0, "batches": 0}
    after = (datetime.min.replace(tzinfo=UTC), "")  # "" sorts before every id
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, archived_at, session_type FROM sessions_app_session "
                # The plain `archived_at >=` bound is what lets the archived_at index start
                # where the last batch stopped; the row comparison breaks ties.
                "WHERE archived_at < %s AND archived_at >= %s AND (archived_at, id) > (%s, %s) "
                "ORDER BY archived_at, id LIMIT %s",
                [latest, after[0], after[0], after[1], batch_size],
            )
            rows = cursor.fetchall()
        if not rows:
            break
        after = (rows[-1][1], rows[-1][0])
        doomed = [row[0] for row in rows if row[2] in cutoffs and row[1] < cutoffs[row[2]]]
        if doomed:
            sessions, events = _delete_batch(doomed)
            counts["sessions"] += sessions
            counts["events"] += events
            counts["batches"] += 1
        if len(rows) < batch_size:
            break
    from sessions_app.archive.tombstones import prune_tombstones

    counts["tombstones"] = prune_tombstones(now)
    if counts["sessions"]:
        logger.info("deleted archived sessions past retention: %s", counts)
    return counts
