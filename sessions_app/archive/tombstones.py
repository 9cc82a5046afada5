"""Deletes win over a racing end or archive (issue 11 #2).

The archiver snapshots a session in Redis, then writes it to Postgres. A delete arriving between
the two used to remove the Redis keys and find nothing in Postgres yet, and the snapshot was
written after it: the deleted session came back. Now a delete leaves a tombstone row, and the
archive transaction skips tombstoned sessions. Both sides take an advisory lock on the session's
bucket first (the archiver shared, the delete exclusive), so either the delete sees and removes
the archived rows, or the archiver sees the tombstone: there is no moment in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from sessions_app.models import DeletedSession
from sessions_app.rollups import unfold_sessions

# First key of the two-int advisory locks (an arbitrary constant that names this use), and the
# number of buckets session ids hash into: few enough for a batch to take them all cheaply.
LOCK_CLASS = 0x5EED
LOCK_BUCKETS = 64
# How long tombstones are kept: an archive write starts seconds after its snapshot.
TOMBSTONE_DAYS = 2

_BUCKET = f"mod(abs(hashtext(x)), {LOCK_BUCKETS})"


def lock_for_archive(cursor, session_ids: Sequence[str]) -> set[str]:
    """In the archive transaction: lock the ids' buckets (shared); the ids with a tombstone."""
    if not session_ids:
        return set()
    ids = [str(session_id) for session_id in session_ids]
    # In bucket order, so two archivers never wait on each other in a cycle.
    cursor.execute(
        f"SELECT pg_advisory_xact_lock_shared({LOCK_CLASS}, b) FROM ("  # noqa: S608 - constants
        f"SELECT DISTINCT {_BUCKET} AS b FROM unnest(%s::text[]) AS x ORDER BY 1) buckets",
        [ids],
    )
    cursor.execute(
        f"SELECT session_id FROM {DeletedSession._meta.db_table} "  # noqa: S608 - constants
        "WHERE session_id = ANY(%s::text[])",
        [ids],
    )
    return {row[0] for row in cursor.fetchall()}


def delete_archived_session(session_id: str) -> bool:
    """Tombstone the session and delete its archived rows; True if archived rows were deleted.

    Call it after the session's Redis keys are gone (store.delete_session does).
    """
    from sessions_app.archive.retention import delete_rows

    session_id = str(session_id)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT pg_advisory_xact_lock({LOCK_CLASS}, {_BUCKET}) FROM (SELECT %s::text AS x) s",  # noqa: S608
            [session_id],
        )
        DeletedSession.objects.update_or_create(
            session_id=session_id, defaults={"deleted_at": timezone.now()}
        )
        unfold_sessions([session_id], cursor=cursor)  # before the rows go: it reads them
        sessions, _ = delete_rows(cursor, [session_id])
        return bool(sessions)


def prune_tombstones(now=None) -> int:
    """Delete tombstones older than TOMBSTONE_DAYS; how many."""
    cutoff = (now or timezone.now()) - timedelta(days=TOMBSTONE_DAYS)
    deleted, _ = DeletedSession.objects.filter(deleted_at__lt=cutoff).delete()
    return deleted
