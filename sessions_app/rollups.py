"""Keeping DailyMetric and UserDailyMetric current: fold newly archived sessions into them.

The archiver calls `fold_sessions` inside the transaction that writes a batch, with the ids it
inserted (not the ones a re-run after a crash merely updated), so each session is counted once,
when it commits, and analytics reads rollups without a raw delta. Concurrent batches serialise
on the (day, type) and (user, day, type) rows: an upsert adds to whatever row is there; a
recompute excludes them all with the advisory ROLLUP_LOCK. Every writer touches DailyMetric
first, then UserDailyMetric, each in key order, so writers never deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from sessions_app.metrics import (
    ADDITIVE_COLUMNS,
    METRIC_COLUMNS,
    ROLLUP_LOCK,
    TOP_ASSETS_PER_DAY,
    TOP_QUERY_TYPES_PER_DAY,
    TOP_TAGS_PER_DAY,
    USER_METRIC_COLUMNS,
    USER_TOP_SCALE,
    aggregate_sql,
)
from sessions_app.models import Session

# The sessions a fold or unfold reads: the ids, looked for only in the archive days between
# %(first)s and %(last)s (the partition key). The archiver knows its batch's days; probing every
# kept day's partition for 1,000 ids measured 101 ms against 4 ms for one day, at 48 days.
_BATCH = "s.id = ANY(%(ids)s) AND s.archived_at BETWEEN %(first)s AND %(last)s"
# When the caller does not know the days: every partition.
EVERY_DAY = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))

# A folded row keeps this many times the top-list length a recompute keeps, so items near the
# cut are not lost batch by batch; a recompute trims them back.
FOLD_TOP_SCALE = 4


def _fold_sql() -> str:
    ctes, select = aggregate_sql(_BATCH, top_scale=FOLD_TOP_SCALE)
    columns = ", ".join(METRIC_COLUMNS)
    added = ",\n        ".join(f"{c} = d.{c} + EXCLUDED.{c}" for c in ADDITIVE_COLUMNS)
    hist = "fs_hist_add(d.duration_hist, EXCLUDED.duration_hist)"
    started = "(d.sessions_started + EXCLUDED.sessions_started)"
    return f"""
    WITH {ctes}
    INSERT INTO sessions_app_dailymetric AS d ({columns}, computed_at)
    SELECT {columns}, statement_timestamp() FROM ({select}) batch
    -- One lock order for every writer: concurrent folds wait for each other, never deadlock.
    ORDER BY day, session_type
    ON CONFLICT (day, session_type) DO UPDATE SET
        {added},
        duration_hist = {hist},
        avg_duration_seconds =
            (d.total_duration_seconds + EXCLUDED.total_duration_seconds) / nullif({started}, 0),
        avg_queries_per_session = (d.queries + EXCLUDED.queries)::float8 / nullif({started}, 0),
        p50_duration_seconds = coalesce(fs_hist_quantile({hist}, 0.5), 0),
        p95_duration_seconds = coalesce(fs_hist_quantile({hist}, 0.95), 0),
        p99_duration_seconds = coalesce(fs_hist_quantile({hist}, 0.99), 0),
        top_assets = fs_counts_add(d.top_assets, EXCLUDED.top_assets,
                                   {TOP_ASSETS_PER_DAY * FOLD_TOP_SCALE}),
        tag_counts = fs_counts_add(d.tag_counts, EXCLUDED.tag_counts,
                                   {TOP_TAGS_PER_DAY * FOLD_TOP_SCALE}),
        query_type_counts = fs_counts_add(d.query_type_counts, EXCLUDED.query_type_counts,
                                          {TOP_QUERY_TYPES_PER_DAY * FOLD_TOP_SCALE}),
        computed_at = greatest(d.computed_at, EXCLUDED.computed_at)
    """  # noqa: S608 - SQL from constants; values are bound parameters


FOLD_SQL = _fold_sql()


def _unfold_sql() -> str:
    ctes, select = aggregate_sql(_BATCH, top_scale=FOLD_TOP_SCALE)
    less = ",\n        ".join(f"{c} = d.{c} - b.{c}" for c in ADDITIVE_COLUMNS)
    hist = "fs_hist_sub(d.duration_hist, b.duration_hist)"
    started = "(d.sessions_started - b.sessions_started)"
    return f"""
    WITH {ctes}
    UPDATE sessions_app_dailymetric AS d SET
        {less},
        duration_hist = {hist},
        avg_duration_seconds =
            coalesce((d.total_duration_seconds - b.total_duration_seconds)
                     / nullif({started}, 0), 0),
        avg_queries_per_session = coalesce((d.queries - b.queries)::float8
                                           / nullif({started}, 0), 0),
        p50_duration_seconds = coalesce(fs_hist_quantile({hist}, 0.5), 0),
        p95_duration_seconds = coalesce(fs_hist_quantile({hist}, 0.95), 0),
        p99_duration_seconds = coalesce(fs_hist_quantile({hist}, 0.99), 0),
        top_assets = fs_counts_sub(d.top_assets, b.top_assets),
        tag_counts = fs_counts_sub(d.tag_counts, b.tag_counts),
        query_type_counts = fs_counts_sub(d.query_type_counts, b.query_type_counts),
        computed_at = greatest(d.computed_at, statement_timestamp())
    FROM (SELECT * FROM ({select}) batch ORDER BY day, session_type) b
    WHERE d.day = b.day AND d.session_type = b.session_type
    """  # noqa: S608 - SQL from constants; values are bound parameters


UNFOLD_SQL = _unfold_sql()


def _top_limits(scale: int) -> tuple[int, int, int]:
    return (TOP_ASSETS_PER_DAY * scale, TOP_TAGS_PER_DAY * scale, TOP_QUERY_TYPES_PER_DAY * scale)


def _user_fold_sql() -> str:
    ctes, select = aggregate_sql(_BATCH, top_scale=USER_TOP_SCALE, per_user=True)
    columns = ", ".join(USER_METRIC_COLUMNS)
    added = ",\n        ".join(f"{c} = d.{c} + EXCLUDED.{c}" for c in ADDITIVE_COLUMNS)
    assets, tags, qtypes = _top_limits(USER_TOP_SCALE)
    return f"""
    WITH {ctes}
    INSERT INTO sessions_app_userdailymetric AS d ({columns})
    SELECT {columns} FROM ({select}) batch
    ORDER BY user_id, day, session_type
    ON CONFLICT (user_id, day, session_type) DO UPDATE SET
        {added},
        duration_hist = fs_hist_add(d.duration_hist, EXCLUDED.duration_hist),
        top_assets = fs_counts_add(d.top_assets, EXCLUDED.top_assets, {assets}),
        tag_counts = fs_counts_add(d.tag_counts, EXCLUDED.tag_counts, {tags}),
        query_type_counts = fs_counts_add(d.query_type_counts, EXCLUDED.query_type_counts,
                                          {qtypes}),
        first_session_at = least(d.first_session_at, EXCLUDED.first_session_at),
        last_activity_at = greatest(d.last_activity_at, EXCLUDED.last_activity_at)
    """  # noqa: S608 - SQL from constants; values are bound parameters


USER_FOLD_SQL = _user_fold_sql()

# The (day, type) rows an unfold changes, locked in key order as folds lock them (an UPDATE
# ... FROM locks in whatever order its join yields, which can deadlock with a fold).
UNFOLD_LOCK_SQL = f"""
SELECT 1 FROM sessions_app_dailymetric d
WHERE (d.day, d.session_type) IN (
    SELECT (s.created_at AT TIME ZONE %(tz)s)::date, s.session_type
    FROM sessions_app_session s WHERE {_BATCH})
ORDER BY d.day, d.session_type
FOR UPDATE
"""  # noqa: S608 - SQL from constants

# The (user, day, type) rows an unfold changes, locked in key order before it reads the rows
# that stay: no fold can add to them until the delete commits, and every fold that already
# did is visible to the unfold's next statement.
USER_UNFOLD_LOCK_SQL = f"""
SELECT 1 FROM sessions_app_userdailymetric d
WHERE (d.user_id, d.day, d.session_type) IN (
    SELECT s.user_id, (s.created_at AT TIME ZONE %(tz)s)::date, s.session_type
    FROM sessions_app_session s WHERE {_BATCH})
ORDER BY d.user_id, d.day, d.session_type
FOR UPDATE
"""  # noqa: S608 - SQL from constants


def _user_unfold_sql() -> str:
    ctes, select = aggregate_sql(_BATCH, top_scale=USER_TOP_SCALE, per_user=True)
    less = ",\n        ".join(f"{c} = d.{c} - b.{c}" for c in ADDITIVE_COLUMNS)
    # min/max do not subtract: read them again from the row's other sessions (one user's day,
    # through the (user_id, created_at) index).
    others = """FROM sessions_app_session o
        WHERE o.user_id = d.user_id AND o.session_type = d.session_type
          AND o.created_at >= d.day::timestamp AT TIME ZONE %(tz)s
          AND o.created_at < (d.day + 1)::timestamp AT TIME ZONE %(tz)s
          AND NOT o.id = ANY(%(ids)s)"""
    return f"""
    WITH {ctes}
    UPDATE sessions_app_userdailymetric AS d SET
        {less},
        duration_hist = fs_hist_sub(d.duration_hist, b.duration_hist),
        top_assets = fs_counts_sub(d.top_assets, b.top_assets),
        tag_counts = fs_counts_sub(d.tag_counts, b.tag_counts),
        query_type_counts = fs_counts_sub(d.query_type_counts, b.query_type_counts),
        first_session_at = (SELECT min(o.created_at) {others}),
        last_activity_at = (SELECT max(o.last_activity_at) {others})
    FROM ({select}) b
    WHERE d.user_id = b.user_id AND d.day = b.day AND d.session_type = b.session_type
    """  # noqa: S608 - SQL from constants; values are bound parameters


USER_UNFOLD_SQL = _user_unfold_sql()

# Shared with other folds, exclusive against a recompute (metrics.ROLLUP_LOCK).
_SHARED_LOCK = "SELECT pg_advisory_xact_lock_shared(%s, %s)"


def _run(
    statements: Sequence[str],
    session_ids: Sequence,
    cursor,
    counted: int = 0,
    archived_between: tuple[datetime, datetime] = EVERY_DAY,
) -> int:
    """Run the statements in order on the ids (archived between the two times); rows
    statement `counted` touched."""
    to_python = Session._meta.pk.to_python  # the id column's own type, whatever it is
    ids = [to_python(session_id) for session_id in session_ids]
    if not ids or not settings.SESSION_ENABLE_ANALYTICS:
        return 0
    first, last = archived_between
    params: dict[str, Any] = {
        "ids": ids,
        "tz": timezone.get_current_timezone_name(),
        "first": first,
        "last": last,
    }

    def run(cur) -> int:
        cur.execute(_SHARED_LOCK, ROLLUP_LOCK)
        touched = 0
        for index, sql in enumerate(statements):
            cur.execute(sql, params)
            if index == counted:
                touched = cur.rowcount
        return touched

    if cursor is not None:
        return run(cursor)
    with connection.cursor() as own:
        return run(own)


def unfold_sessions(session_ids: Sequence, cursor=None) -> int:
    """Take archived sessions back out of their rollups, per day and per user; the (day, type)
    rows touched.

    Call it in the transaction that deletes them on request (a user's delete), before the
    delete: it reads the rows. Retention does not call it: rollups outlive raw rows.
    """
    statements = (UNFOLD_LOCK_SQL, UNFOLD_SQL, USER_UNFOLD_LOCK_SQL, USER_UNFOLD_SQL)
    return _run(statements, session_ids, cursor, counted=1)


def fold_sessions(
    session_ids: Sequence,
    cursor=None,
    archived_between: tuple[datetime, datetime] = EVERY_DAY,
) -> int:
    """Add these archived sessions to their (day, type) and (user, day, type) rollups; the
    (day, type) rows touched.

    Call it once per session, in the transaction that inserted it. Also for rows written by
    other means than the archiver (test factories, a bulk load) that should count at once.
    With SESSION_ENABLE_ANALYTICS off it does nothing (no rollups are kept then).
    `archived_between`: (first, last) archive time of the sessions, when known: only those
    days' partitions are searched.
    """
    return _run((FOLD_SQL, USER_FOLD_SQL), session_ids, cursor, 0, archived_between)
