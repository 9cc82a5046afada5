"""Keeping DailyMetric current: fold newly archived sessions into their days' rollups.

The archiver calls `fold_sessions` inside the transaction that writes a batch, with the ids it
inserted (not the ones a re-run after a crash merely updated), so each session is counted once,
when it commits, and analytics reads rollups without a raw delta. Concurrent batches and a
concurrent recompute serialise on the (day, type) row: an upsert adds to whatever row is there.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    aggregate_sql,
)
from sessions_app.models import Session

# A folded row keeps this many times the top-list length a recompute keeps, so items near the
# cut are not lost batch by batch; a recompute trims them back.
FOLD_TOP_SCALE = 4


def _fold_sql() -> str:
    ctes, select = aggregate_sql("s.id = ANY(%(ids)s)", top_scale=FOLD_TOP_SCALE)
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
    ctes, select = aggregate_sql("s.id = ANY(%(ids)s)", top_scale=FOLD_TOP_SCALE)
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


# Shared with other folds, exclusive against a recompute (metrics.ROLLUP_LOCK).
_SHARED_LOCK = "SELECT pg_advisory_xact_lock_shared(%s, %s)"


def _run(sql: str, session_ids: Sequence, cursor) -> int:
    to_python = Session._meta.pk.to_python  # the id column's own type, whatever it is
    ids = [to_python(session_id) for session_id in session_ids]
    if not ids or not settings.SESSION_ENABLE_ANALYTICS:
        return 0
    params: dict[str, Any] = {"ids": ids, "tz": timezone.get_current_timezone_name()}
    if cursor is not None:
        cursor.execute(_SHARED_LOCK, ROLLUP_LOCK)
        cursor.execute(sql, params)
        return cursor.rowcount
    with connection.cursor() as own:
        own.execute(_SHARED_LOCK, ROLLUP_LOCK)
        own.execute(sql, params)
        return own.rowcount


def unfold_sessions(session_ids: Sequence, cursor=None) -> int:
    """Take archived sessions back out of their rollups; rows touched.

    Call it in the transaction that deletes them on request (a user's delete), before the
    delete: it reads the rows. Retention does not call it: rollups outlive raw rows.
    """
    return _run(UNFOLD_SQL, session_ids, cursor)


def fold_sessions(session_ids: Sequence, cursor=None) -> int:
    """Add these archived sessions to their (day, type) rollups; rows touched.

    Call it once per session, in the transaction that inserted it. Also for rows written by
    other means than the archiver (test factories, a bulk load) that should count at once.
    With SESSION_ENABLE_ANALYTICS off it does nothing (no rollups are kept then).
    """
    return _run(FOLD_SQL, session_ids, cursor)
