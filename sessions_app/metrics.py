"""DailyMetric rollups computed in SQL from archived sessions (never their events).

A session belongs to the day (in TIME_ZONE) and type it was created with. One SQL statement
aggregates a range of raw rows into DailyMetric-shaped rows; `compute_daily_metrics` stores them
and `analytics` reuses the same statement for data the rollups do not hold yet.
"""

import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from sessions_app import validation
from sessions_app.models import DailyMetric, SessionType, UserDailyMetric

# Per (day, type) only the most frequent assets and tags are kept, so rows stay small whatever the
# cardinality; range totals built from them are exact for anything that is in every day's top.
TOP_ASSETS_PER_DAY = 25
TOP_TAGS_PER_DAY = 25
TOP_QUERY_TYPES_PER_DAY = 50

# The DailyMetric columns the aggregate statement yields, in order.
METRIC_COLUMNS = (
    "day",
    "session_type",
    "sessions_started",
    "sessions_completed",
    "sessions_failed",
    "sessions_abandoned",
    "sessions_expired",
    "queries",
    "cache_hits",
    "errors",
    "messages",
    "tool_calls",
    "total_duration_seconds",
    "avg_duration_seconds",
    "p50_duration_seconds",
    "p95_duration_seconds",
    "p99_duration_seconds",
    "avg_queries_per_session",
    "tokens_in",
    "tokens_out",
    "cost",
    "duration_hist",
    "top_assets",
    "query_type_counts",
    "tag_counts",
    "requests",
    "processing_seconds",
)
# Columns that add up when a batch is folded into an existing row (rollups.fold_sessions).
ADDITIVE_COLUMNS = (
    "sessions_started",
    "sessions_completed",
    "sessions_failed",
    "sessions_abandoned",
    "sessions_expired",
    "queries",
    "cache_hits",
    "errors",
    "messages",
    "tool_calls",
    "total_duration_seconds",
    "tokens_in",
    "tokens_out",
    "cost",
    "requests",
    "processing_seconds",
)

# The UserDailyMetric columns the aggregate statement yields with per_user=True, in order: the
# additive ones, the histogram and counts, and the min/max timestamps a user page shows.
USER_METRIC_COLUMNS = (
    "user_id",
    "day",
    "session_type",
    *ADDITIVE_COLUMNS,
    "duration_hist",
    "top_assets",
    "query_type_counts",
    "tag_counts",
    "first_session_at",
    "last_activity_at",
)

_SESSION = "sessions_app_session"
_METRIC = "sessions_app_dailymetric"
_USER_METRIC = "sessions_app_userdailymetric"


def day_bounds(start_day: date, end_day: date) -> tuple[datetime, datetime]:
    """[start of start_day, start of the day after end_day) as aware datetimes in TIME_ZONE.

    Days are clamped to validation's MIN_DAY..MAX_DAY, so open ends (date.min, date.max) work.
    """
    start_day = max(start_day, validation.MIN_DAY)
    end_day = min(end_day, validation.MAX_DAY)
    tz = timezone.get_current_timezone()
    start = timezone.make_aware(datetime.combine(start_day, dtime.min), tz)
    end = timezone.make_aware(datetime.combine(end_day + timedelta(days=1), dtime.min), tz)
    return start, end


def _top_json(
    cte: str,
    item_sql: str,
    source: str,
    limit: int,
    where: str = "",
    weight: str = "1",
    keys: str = "day, session_type",
) -> str:
    """CTE `cte(<keys>, counts jsonb)`: each group's `limit` most frequent items."""
    r_keys = ", ".join(f"r.{key.strip()}" for key in keys.split(","))
    positions = ", ".join(str(i + 1) for i in range(keys.count(",") + 2))
    return f"""
    {cte} AS (
        SELECT {keys}, jsonb_object_agg(item, n) AS counts
        FROM (
            SELECT {keys}, item, n,
                   row_number() OVER (PARTITION BY {keys} ORDER BY n DESC, item) AS rank
            FROM (
                SELECT {r_keys}, {item_sql} AS item, sum({weight}) AS n
                FROM {source} {where}
                GROUP BY {positions}
            ) grouped
        ) ranked
        WHERE rank <= {limit}
        GROUP BY {keys}
    )"""  # noqa: S608 - SQL from constants; values are bound parameters


def aggregate_sql(
    session_filter: str, query_types: bool = True, top_scale: int = 1, per_user: bool = False
) -> tuple[str, str]:
    """(CTE definitions, SELECT) aggregating sessions matching `session_filter` per (day, type).

    `session_filter` is an SQL condition on the session table `s`; parameters are named
    (`%(tz)s` plus whatever the filter uses). The SELECT yields METRIC_COLUMNS. Query types come
    from the sessions' own `query_type_counts` (never the events table); `query_types=False`
    leaves `query_type_counts` empty. `top_scale` multiplies the top-list lengths (folding a
    batch keeps more, so the merged lists stay exact for anything near the top).

    `per_user=True` groups per (user, day, type) instead, from the same definitions, and the
    SELECT also yields every USER_METRIC_COLUMNS (user_id, first_session_at, last_activity_at).
    """
    keys = "user_id, day, session_type" if per_user else "day, session_type"
    assets = _top_json(
        "r_assets",
        "a.item",
        "r_s r CROSS JOIN LATERAL unnest(r.assets) AS a(item)",
        TOP_ASSETS_PER_DAY * top_scale,
        keys=keys,
    )
    tags = _top_json(
        "r_tags",
        "t.item",
        "r_s r CROSS JOIN LATERAL unnest(r.tags) AS t(item)",
        TOP_TAGS_PER_DAY * top_scale,
        keys=keys,
    )
    qtypes = (
        _top_json(
            "r_qtypes",
            "q.item",
            "r_s r CROSS JOIN LATERAL jsonb_each_text(r.query_type_counts) AS q(item, n)",
            TOP_QUERY_TYPES_PER_DAY * top_scale,
            weight="q.n::bigint",
            keys=keys,
        )
        if query_types
        else "r_qtypes AS (SELECT NULL::text AS user_id, NULL::date AS day, "
        "NULL::text AS session_type, NULL::jsonb AS counts WHERE false)"
    )
    user_columns = ", s.user_id, s.created_at, s.last_activity_at" if per_user else ""
    user_base = (
        ", min(created_at) AS first_session_at, max(last_activity_at) AS last_activity_at"
        if per_user
        else ""
    )
    ctes = f"""
    r_s AS MATERIALIZED (
        SELECT s.id, (s.created_at AT TIME ZONE %(tz)s)::date AS day, s.session_type, s.status,
               s.assets, s.tags, s.duration_seconds, s.query_count, s.cache_hits, s.error_count,
               s.message_count, s.tool_call_count, s.tokens_in, s.tokens_out, s.cost,
               s.query_type_counts, s.request_count, s.total_processing_time{user_columns}
        FROM {_SESSION} s
        WHERE {session_filter}
    ),
    r_base AS (
        SELECT {keys},
               count(*) AS sessions_started,
               count(*) FILTER (WHERE status = 'completed') AS sessions_completed,
               count(*) FILTER (WHERE status = 'failed') AS sessions_failed,
               count(*) FILTER (WHERE status = 'abandoned') AS sessions_abandoned,
               count(*) FILTER (WHERE status = 'expired') AS sessions_expired,
               sum(query_count) AS queries,
               sum(cache_hits) AS cache_hits,
               sum(error_count) AS errors,
               sum(message_count) AS messages,
               sum(tool_call_count) AS tool_calls,
               sum(duration_seconds) AS total_duration_seconds,
               avg(duration_seconds) AS avg_duration_seconds,
               avg(query_count)::float AS avg_queries_per_session,
               sum(tokens_in) AS tokens_in,
               sum(tokens_out) AS tokens_out,
               sum(cost) AS cost,
               sum(request_count) AS requests,
               sum(total_processing_time) AS processing_seconds{user_base}
        FROM r_s
        GROUP BY {keys}
    ),
    r_hist AS (
        SELECT {keys},
               fs_hist_from_buckets(array_agg(b), array_agg(n)) AS hist
        FROM (
            SELECT {keys}, fs_hist_bucket(duration_seconds) AS b, count(*) AS n
            FROM r_s GROUP BY {keys}, b
        ) per_bucket
        GROUP BY {keys}
    ),
    {assets},
    {tags},
    {qtypes}"""  # noqa: S608 - SQL from constants; values are bound parameters
    user_select = "b.user_id, b.first_session_at, b.last_activity_at, " if per_user else ""
    select = f"""
    SELECT {user_select}b.day, b.session_type, b.sessions_started, b.sessions_completed,
           b.sessions_failed, b.sessions_abandoned, b.sessions_expired, b.queries,
           b.cache_hits, b.errors,
           b.messages, b.tool_calls, b.total_duration_seconds, b.avg_duration_seconds,
           fs_hist_quantile(h.hist, 0.5) AS p50_duration_seconds,
           fs_hist_quantile(h.hist, 0.95) AS p95_duration_seconds,
           fs_hist_quantile(h.hist, 0.99) AS p99_duration_seconds,
           b.avg_queries_per_session, b.tokens_in, b.tokens_out, b.cost,
           h.hist AS duration_hist,
           coalesce(a.counts, '{{}}'::jsonb) AS top_assets,
           coalesce(q.counts, '{{}}'::jsonb) AS query_type_counts,
           coalesce(t.counts, '{{}}'::jsonb) AS tag_counts,
           b.requests, b.processing_seconds
    FROM r_base b
    LEFT JOIN r_hist h USING ({keys})
    LEFT JOIN r_assets a USING ({keys})
    LEFT JOIN r_qtypes q USING ({keys})
    LEFT JOIN r_tags t USING ({keys})"""  # noqa: S608 - SQL from constants
    return ctes, select


def _insert_day_sql() -> str:
    ctes, select = aggregate_sql("s.created_at >= %(start)s AND s.created_at < %(end)s")
    columns = ", ".join(METRIC_COLUMNS)
    # Every type gets a row, zero when it had no sessions: a row says "this day was computed",
    # which analytics relies on to know which days the rollups cover. computed_at is when this
    # statement's snapshot was taken (not the transaction's start): analytics adds sessions
    # archived after it on top of the rollup.
    return f"""
    WITH {ctes}
    INSERT INTO {_METRIC} ({columns}, computed_at)
    SELECT %(day)s::date, t.session_type,
           coalesce(r.sessions_started, 0), coalesce(r.sessions_completed, 0),
           coalesce(r.sessions_failed, 0), coalesce(r.sessions_abandoned, 0),
           coalesce(r.sessions_expired, 0), coalesce(r.queries, 0), coalesce(r.cache_hits, 0),
           coalesce(r.errors, 0), coalesce(r.messages, 0), coalesce(r.tool_calls, 0),
           coalesce(r.total_duration_seconds, 0), coalesce(r.avg_duration_seconds, 0),
           coalesce(r.p50_duration_seconds, 0), coalesce(r.p95_duration_seconds, 0),
           coalesce(r.p99_duration_seconds, 0), coalesce(r.avg_queries_per_session, 0),
           coalesce(r.tokens_in, 0), coalesce(r.tokens_out, 0), coalesce(r.cost, 0),
           r.duration_hist, coalesce(r.top_assets, '{{}}'::jsonb),
           coalesce(r.query_type_counts, '{{}}'::jsonb),
           coalesce(r.tag_counts, '{{}}'::jsonb), coalesce(r.requests, 0),
           coalesce(r.processing_seconds, 0), statement_timestamp()
    FROM unnest(%(types)s::text[]) AS t(session_type)
    LEFT JOIN ({select}) r ON r.session_type = t.session_type
    """  # noqa: S608 - SQL from constants; values are bound parameters


# A per-user row keeps this many times the daily top-list length, from folds and recomputes
# alike: a user's day rarely has that many distinct assets or tags, so the user's lists are
# exact, and a fold and a recompute give the same row.
USER_TOP_SCALE = 4


def _insert_user_day_sql() -> str:
    ctes, select = aggregate_sql(
        "s.created_at >= %(start)s AND s.created_at < %(end)s",
        top_scale=USER_TOP_SCALE,
        per_user=True,
    )
    columns = ", ".join(USER_METRIC_COLUMNS)
    # Only (user, day, type) groups with sessions get a row: DailyMetric's rows already say
    # which days the rollups cover, for both tables.
    return f"""
    WITH {ctes}
    INSERT INTO {_USER_METRIC} ({columns})
    SELECT {columns} FROM ({select}) fresh
    """  # noqa: S608 - SQL from constants; values are bound parameters


# Advisory lock (class, key) between recomputes and folds of the rollups: a recompute takes it
# exclusive, since it deletes and re-inserts rows a concurrent fold could otherwise re-create
# under it (a duplicate (day, type)); folds take it shared, so they never wait on each other.
ROLLUP_LOCK = (0x4011, 0)


def compute_daily_metrics(start_day: date, end_day: date) -> dict:
    """Recompute the DailyMetric rows of every (day, type) from start_day to end_day inclusive,
    and the UserDailyMetric rows of every (user, day, type) of those days.

    Replaces the range's rows in one transaction, so running it twice gives the same rows. Only
    recompute days whose sessions are still kept: retention deletes raw sessions, not rollups.
    """
    if end_day < start_day:
        raise ValueError(f"end_day {end_day} is before start_day {start_day}")
    started = time.monotonic()
    sql = _insert_day_sql()
    user_sql = _insert_user_day_sql()
    tz = timezone.get_current_timezone_name()
    types = list(SessionType.values)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", ROLLUP_LOCK)
        DailyMetric.objects.filter(day__gte=start_day, day__lte=end_day).delete()
        UserDailyMetric.objects.filter(day__gte=start_day, day__lte=end_day).delete()
        # One statement per day keeps each sort and hash small however long the range is.
        day = start_day
        while day <= end_day:
            start, end = day_bounds(day, day)
            params: dict[str, Any] = {
                "tz": tz,
                "start": start,
                "end": end,
                "day": day,
                "types": types,
            }
            cursor.execute(sql, params)
            cursor.execute(user_sql, params)
            day += timedelta(days=1)
        cursor.execute(
            "SELECT count(*), coalesce(sum(sessions_started), 0) "
            "FROM sessions_app_dailymetric WHERE day >= %s AND day <= %s",
            [start_day, end_day],
        )
        rows, sessions = cursor.fetchone()
    days = (end_day - start_day).days + 1
    return {
        "start_day": start_day.isoformat(),
        "end_day": end_day.isoformat(),
        "days": days,
        "rows": rows,
        "sessions": int(sessions),
        "seconds": round(time.monotonic() - started, 3),
    }


def backfill_user_metrics() -> int:
    """Build UserDailyMetric rows from every kept raw session, per day; rows written.

    For a database that had DailyMetric before UserDailyMetric existed (its migration calls
    this): user rollups of days already retired stay empty, as raw per-user reads were.
    """
    tz = timezone.get_current_timezone_name()
    written = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", ROLLUP_LOCK)
        cursor.execute(f"SELECT min(created_at), max(created_at) FROM {_SESSION}")  # noqa: S608
        first, last = cursor.fetchone()
        if first is None:
            return 0
        local = timezone.get_current_timezone()
        day, end_day = first.astimezone(local).date(), last.astimezone(local).date()
        cursor.execute(f"DELETE FROM {_USER_METRIC}")  # noqa: S608 - constant
        sql = _insert_user_day_sql()
        while day <= end_day:
            start, end = day_bounds(day, day)
            cursor.execute(sql, {"tz": tz, "start": start, "end": end})
            written += cursor.rowcount
            day += timedelta(days=1)
    return written
