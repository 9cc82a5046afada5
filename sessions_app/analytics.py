"""Dashboard and API selectors: session stats, per-user summaries, chart series and exports.

Where the numbers come from, so totals are right at any moment:
- DailyMetric rollups for every day that has them: the archiver folds each batch into its days'
  rows in the transaction that writes it (rollups.py), so they are current, and a page reads
  at most one row per (day, type) however many sessions there are;
- UserDailyMetric rollups for user-filtered questions, folded in the same transactions as
  DailyMetric (so a day with DailyMetric rows has its user rows too): one row per (day, type)
  of the user, whatever their session count;
- raw Session rows, aggregated by the same SQL (metrics.aggregate_sql), only for days without
  any rollup row (sessions written by other means and not folded; never the events table);
- Redis for live sessions (store.live_counts): they count in `total_sessions` and
  `active_sessions`; their counters (queries, durations, tokens...) join when they are archived.

Duration percentiles over a range come from the rollups' merged log-scale histograms
(histogram.py): real percentiles to within 2%, per user too.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import redis
from django.utils import timezone

from sessions_app import csvsafe
from sessions_app.exceptions import InvalidInput, StoreUnavailable
from sessions_app.metrics import METRIC_COLUMNS, USER_METRIC_COLUMNS, aggregate_sql, day_bounds
from sessions_app.models import DailyMetric, SessionStatus, SessionType
from sessions_app.replica import read_connection, reads_replica

TOP_ITEMS = 10
MAX_DAYS = 3660
# Live sessions a user may hold that we count one by one (list_user_sessions pages).
USER_LIVE_LIMIT = 500
EXPORT_FORMATS = ("csv", "json")
END_STATUSES = ("completed", "failed", "abandoned", "expired")


@dataclass(frozen=True)
class Period:
    """A range of whole days in TIME_ZONE, both ends included."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def includes_today(self) -> bool:
        return self.start <= timezone.localdate() <= self.end

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "days": self.days}


def resolve_period(days: int = 30, start: date | None = None, end: date | None = None) -> Period:
    """The last `days` days up to today, or [start, end] when given; InvalidInput when bad."""
    today = timezone.localdate()
    if start is None and end is None:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
            raise InvalidInput("days", f"must be a whole number from 1 to {MAX_DAYS}")
        return Period(today - timedelta(days=days - 1), today)
    end = end or today
    start = start or end - timedelta(days=days - 1)
    if start > end:
        raise InvalidInput("start", "must be on or before the end date")
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidInput("start", f"the range must be at most {MAX_DAYS} days")
    return Period(start, end)


def _validate_type(session_type: str | None) -> str | None:
    if session_type in (None, ""):
        return None
    if session_type not in SessionType.values:
        raise InvalidInput(
            "session_type", f"must be one of {', '.join(SessionType.values)}, not {session_type!r}"
        )
    return session_type


# ---- the `daily` source: rollups + delta, or raw rows ------------------------------------------


def _covered_days(period: Period) -> set[date]:
    """The days in `period` that have rollup rows (the archiver folds every batch into them)."""
    return set(
        DailyMetric.objects.filter(day__gte=period.start, day__lte=period.end)
        .values_list("day", flat=True)
        .distinct()
    )


def _uncovered_runs(period: Period, covered: set[date]) -> list[tuple[date, date]]:
    """Contiguous runs of days in `period` that no rollup covers."""
    runs: list[tuple[date, date]] = []
    day = period.start
    while day <= period.end:
        if day not in covered:
            run_start = day
            while day + timedelta(days=1) <= period.end and day + timedelta(days=1) not in covered:
                day += timedelta(days=1)
            runs.append((run_start, day))
        day += timedelta(days=1)
    return runs


def _daily_source(
    period: Period,
    session_type: str | None,
    user_id: str | None,
    query_types: bool = True,
    *,
    per_user: bool = False,
) -> tuple[str, dict[str, Any], bool]:
    """(WITH clause ending in CTE `daily` shaped like DailyMetric, params, raw_only).

    A day with rollup rows is read from them alone: the archiver folds each batch into its day
    in the transaction that writes it, so they are current. Only days without any rollup row
    (sessions written by other means and not yet computed) are aggregated from raw sessions.

    With a `user_id`, or `per_user` (every user), `daily` is shaped like UserDailyMetric
    (USER_METRIC_COLUMNS) and reads it: the same days are covered, since both are folded and
    recomputed together.
    """
    per_user = per_user or user_id is not None
    columns = ", ".join(USER_METRIC_COLUMNS if per_user else METRIC_COLUMNS)
    table = "sessions_app_userdailymetric" if per_user else "sessions_app_dailymetric"
    start, end = day_bounds(period.start, period.end)
    params: dict[str, Any] = {
        "tz": timezone.get_current_timezone_name(),
        "start": start,
        "end": end,
        "start_day": period.start,
        "end_day": period.end,
        "session_type": session_type,
        "user_id": user_id,
    }
    conditions = ["s.created_at >= %(start)s", "s.created_at < %(end)s"]
    if session_type:
        conditions.append("s.session_type = %(session_type)s")
    if user_id is not None:
        # Raw rows of uncovered days: the (user_id, created_at) index, never the events table.
        conditions.append("s.user_id = %(user_id)s")

    def raw(conditions: list[str]) -> tuple[str, str]:
        ctes, select = aggregate_sql(" AND ".join(conditions), query_types, per_user=per_user)
        return ctes, f"SELECT {columns} FROM ({select}) raw"  # noqa: S608 - constants

    covered = _covered_days(period)
    if not covered:
        ctes, select = raw(conditions)
        return f"WITH {ctes}, daily AS ({select})", params, True
    runs = _uncovered_runs(period, covered)
    if runs:
        reach = []
        for index, (run_start, run_end) in enumerate(runs[:16]):
            params[f"u{index}_start"], params[f"u{index}_end"] = day_bounds(run_start, run_end)
            reach.append(
                f"(s.created_at >= %(u{index}_start)s AND s.created_at < %(u{index}_end)s)"
            )
        if len(runs) > 16:  # many gaps: one span; the per-row day check keeps it exact
            params["u_last_start"], params["u_last_end"] = day_bounds(runs[16][0], runs[-1][1])
            reach.append("(s.created_at >= %(u_last_start)s AND s.created_at < %(u_last_end)s)")
        conditions.append(f"({' OR '.join(reach)})")
        conditions.append(
            "NOT ((s.created_at AT TIME ZONE %(tz)s)::date = ANY(%(covered)s::date[]))"
        )
        params["covered"] = sorted(covered)
    type_filter = "AND session_type = %(session_type)s" if session_type else ""
    if user_id is not None:
        type_filter += " AND user_id = %(user_id)s"
    rollups = f"""SELECT {columns} FROM {table}
        WHERE day >= %(start_day)s AND day <= %(end_day)s {type_filter}"""  # noqa: S608
    if not runs:  # every day is covered: the rollups alone
        return f"WITH daily AS ({rollups})", params, False
    ctes, select = raw(conditions)
    daily = f"daily AS ({rollups}\n        UNION ALL\n        {select})"
    return f"WITH {ctes}, {daily}", params, False


def _fetch_all(sql: str, params: dict[str, Any]) -> list[tuple]:
    with read_connection().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _fetch_one(sql: str, params: dict[str, Any]) -> tuple:
    return _fetch_all(sql, params)[0]


def _ratio(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


# ---- live sessions (Redis) ----------------------------------------------------------------------


# What a period without today adds from Redis: nothing.
NO_LIVE: dict[str, Any] = {"available": True, "total": 0, "by_type": {}, "counters": None}


def live_snapshot(session_type: str | None = None, user_id: str | None = None) -> dict[str, Any]:
    """Live counts {"available", "total", "by_type", "counters"}: `counters` sums the counters of
    the sessions not archived yet (store.live_totals, bounded); `available` False: Redis down."""
    from sessions_app.store import get_session_store

    store = get_session_store()
    try:
        counters = store.live_totals(session_type, user_id)
        if user_id is not None:
            items = store.list_user_sessions(user_id, limit=USER_LIVE_LIMIT).items
            by_type = dict.fromkeys(SessionType.values, 0)
            for item in items:  # at most USER_LIVE_LIMIT summaries, already in memory
                by_type[item.session_type] += 1
            counts: dict[str, Any] = {"total": len(items), "by_type": by_type}
        else:
            counts = store.live_counts()
    except (StoreUnavailable, redis.exceptions.RedisError):
        return {"available": False, "total": 0, "by_type": {}, "counters": None}
    by_type = {t: n for t, n in counts["by_type"].items() if n}
    if session_type:
        by_type = {t: n for t, n in by_type.items() if t == session_type}
    total = sum(by_type.values())
    return {"available": True, "total": total, "by_type": by_type, "counters": counters}


# ---- stats --------------------------------------------------------------------------------------

# The stats' select list over the `daily` CTE: totals, sessions per type, top items.
_STATS_SELECT = """
  (SELECT json_build_object(
      'sessions', coalesce(sum(sessions_started), 0),
      'completed', coalesce(sum(sessions_completed), 0),
      'failed', coalesce(sum(sessions_failed), 0),
      'abandoned', coalesce(sum(sessions_abandoned), 0),
      'expired', coalesce(sum(sessions_expired), 0),
      'queries', coalesce(sum(queries), 0),
      'cache_hits', coalesce(sum(cache_hits), 0),
      'errors', coalesce(sum(errors), 0),
      'messages', coalesce(sum(messages), 0),
      'tool_calls', coalesce(sum(tool_calls), 0),
      'duration', coalesce(sum(total_duration_seconds), 0),
      'p50', fs_hist_quantile(fs_hist_merge(duration_hist), 0.5),
      'p95', fs_hist_quantile(fs_hist_merge(duration_hist), 0.95),
      'p99', fs_hist_quantile(fs_hist_merge(duration_hist), 0.99),
      'tokens_in', coalesce(sum(tokens_in), 0),
      'tokens_out', coalesce(sum(tokens_out), 0),
      'cost', coalesce(sum(cost), 0),
      'requests', coalesce(sum(requests), 0),
      'processing_seconds', coalesce(sum(processing_seconds), 0)
   ) FROM daily) AS totals,
  (SELECT coalesce(json_object_agg(session_type, n), '{{}}')
   FROM (SELECT session_type, sum(sessions_started) AS n FROM daily
         GROUP BY session_type HAVING sum(sessions_started) > 0) t) AS by_type,
  (SELECT coalesce(json_agg(json_build_array(kind, item, n) ORDER BY kind, n DESC, item), '[]')
   FROM (
     SELECT kind, item, n, row_number() OVER (PARTITION BY kind ORDER BY n DESC, item) AS rank
     FROM (
       SELECT 'asset' AS kind, j.key AS item, sum(j.value::bigint) AS n
       FROM daily d CROSS JOIN LATERAL jsonb_each_text(d.top_assets) j GROUP BY 1, 2
       UNION ALL
       SELECT 'tag', j.key, sum(j.value::bigint)
       FROM daily d CROSS JOIN LATERAL jsonb_each_text(d.tag_counts) j GROUP BY 1, 2
       UNION ALL
       SELECT 'query_type', j.key, sum(j.value::bigint)
       FROM daily d CROSS JOIN LATERAL jsonb_each_text(d.query_type_counts) j GROUP BY 1, 2
     ) merged
   ) ranked
   WHERE rank <= CASE WHEN kind = 'query_type' THEN 50 ELSE %(top)s END) AS tops"""

_STATS_SQL = "{with_sql}\nSELECT" + _STATS_SELECT


# Per-user stats add when the user was first seen and last active (UserDailyMetric columns).
_USER_STATS_SQL = (
    _STATS_SQL  # noqa: S608 - SQL from constants
    + ",\n  (SELECT min(first_session_at) FROM daily) AS first_session_at,"
    "\n  (SELECT max(last_activity_at) FROM daily) AS last_activity_at"
)


def _stats_row(
    period: Period, session_type: str | None, user_id: str | None, query_types: bool, top: int
) -> tuple[dict, dict, list, tuple]:
    """(totals, sessions by type, top items, (first session, last activity) of a user's rows,
    both None without a user) for get_session_stats: one statement over the rollups."""
    with_sql, params, _ = _daily_source(period, session_type, user_id, query_types)
    params["top"] = top
    if user_id is None:
        totals, by_type, tops = _fetch_one(_STATS_SQL.format(with_sql=with_sql), params)
        return totals, by_type, tops, (None, None)
    totals, by_type, tops, first, last = _fetch_one(
        _USER_STATS_SQL.format(with_sql=with_sql), params
    )
    return totals, by_type, tops, (first, last)


def _session_stats(
    user_id: str | None,
    session_type: str | None,
    days: int,
    start: date | None,
    end: date | None,
    top: int,
    query_types: bool,
) -> tuple[dict[str, Any], tuple]:
    """(get_session_stats' dictionary, (first session, last activity) of the user's rows)."""
    session_type = _validate_type(session_type)
    period = resolve_period(days, start, end)
    totals, by_type, tops, seen = _stats_row(period, session_type, user_id, query_types, top)
    stats = _stats_dict(period, session_type, user_id, totals, by_type, tops, query_types)
    return stats, seen


@reads_replica
def get_session_stats(
    user_id: str | None = None,
    session_type: str | None = None,
    days: int = 30,
    *,
    start: date | None = None,
    end: date | None = None,
    top: int = TOP_ITEMS,
    query_types: bool = True,
) -> dict[str, Any]:
    """Aggregated stats over the last `days` days (or [start, end]) with the seed's fields.

    Rates are fractions from 0 to 1; durations are seconds; cost is in the clients' currency.
    `query_types=False` leaves `query_type_distribution` None.
    """
    return _session_stats(user_id, session_type, days, start, end, top, query_types)[0]


def _stats_dict(
    period: Period,
    session_type: str | None,
    user_id: str | None,
    totals: dict,
    by_type: dict,
    tops: list,
    query_types: bool,
) -> dict[str, Any]:
    """The stats dictionary from the SQL row's parts, with live sessions from Redis added."""
    p50, p95, p99 = totals["p50"], totals["p95"], totals["p99"]
    live = live_snapshot(session_type, user_id) if period.includes_today else NO_LIVE
    archived = int(totals["sessions"])
    # Live sessions' counters add to the totals (not to per-archived-session averages).
    extra = live["counters"] or {}
    queries = int(totals["queries"]) + extra.get("query_count", 0)
    tool_calls = int(totals["tool_calls"]) + extra.get("tool_call_count", 0)
    cache_hits = int(totals["cache_hits"]) + extra.get("cache_hits", 0)
    errors = int(totals["errors"]) + extra.get("error_count", 0)
    tokens_in = int(totals["tokens_in"]) + extra.get("tokens_in", 0)
    tokens_out = int(totals["tokens_out"]) + extra.get("tokens_out", 0)
    breakdown = {t: int(by_type.get(t, 0)) + live["by_type"].get(t, 0) for t in SessionType.values}
    ranked: dict[str, list[tuple[str, int]]] = {"asset": [], "tag": [], "query_type": []}
    for kind, item, count in tops:  # at most 2 * top + 50 rows, already aggregated in SQL
        ranked[kind].append((item, int(count)))
    return {
        "period": period.as_dict(),
        "user_id": user_id,
        "session_type": session_type,
        "total_sessions": archived + live["total"],
        "active_sessions": live["total"],
        "archived_sessions": archived,
        "live_available": live["available"],
        # False: more live sessions than store.live_totals reads; their counters are partial.
        "live_counters_complete": bool(extra.get("complete", True)),
        "total_queries": queries,
        "total_messages": int(totals["messages"]) + extra.get("message_count", 0),
        "total_tool_calls": tool_calls,
        "cache_hits": cache_hits,
        "total_errors": errors,
        "avg_duration_seconds": round(totals["duration"] / archived, 2) if archived else 0.0,
        "duration_p50_seconds": round(p50 or 0.0, 2),
        "duration_p95_seconds": round(p95 or 0.0, 2),
        "duration_p99_seconds": round(p99 or 0.0, 2),
        # "histogram": merged log-scale histograms, within histogram.RELATIVE_ERROR.
        "percentiles": "histogram",
        "avg_queries_per_session": (
            round(int(totals["queries"]) / archived, 2) if archived else 0.0
        ),
        "completion_rate": _ratio(totals["completed"], archived),
        "abandonment_rate": _ratio(totals["abandoned"], archived),
        "failure_rate": _ratio(totals["failed"], archived),
        "expiry_rate": _ratio(totals["expired"], archived),
        # Errors per operation: failed queries and failed tool calls over both.
        "error_rate": _ratio(errors, queries + tool_calls),
        "cache_hit_rate": _ratio(cache_hits, queries),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "total_tokens": tokens_in + tokens_out,
        "total_cost": round(float(totals["cost"]) + extra.get("cost", 0.0), 6),
        # AIECS counters: update_session(increment_requests=, add_processing_time=).
        "total_requests": int(totals["requests"]) + extra.get("request_count", 0),
        "total_processing_time": round(
            float(totals["processing_seconds"]) + extra.get("total_processing_time", 0.0), 3
        ),
        "top_assets": [{"asset": a, "count": n} for a, n in ranked["asset"]],
        "popular_tags": [{"tag": t, "count": n} for t, n in ranked["tag"]],
        "query_type_distribution": dict(ranked["query_type"]) if query_types else None,
        "session_type_breakdown": {t: n for t, n in breakdown.items() if n},
        "status_breakdown": {
            "active": live["total"],
            **{status: int(totals[status]) for status in END_STATUSES},
        },
    }


@reads_replica
def get_user_session_summary(
    user_id: str, days: int = 30, *, query_types: bool = True
) -> dict[str, Any]:
    """One user's stats over the last `days` days, plus when they were first and last seen
    (archived sessions started in the period), all from the user's rollup rows."""
    stats, (first, last) = _session_stats(user_id, None, days, None, None, TOP_ITEMS, query_types)
    return {**stats, "first_session_at": first, "last_activity_at": last}


# ---- chart series -------------------------------------------------------------------------------

# The chart series: CTEs to add after `daily`, and the select list over them.
_SERIES_CTES = """
days AS (
  SELECT d::date AS day
  FROM generate_series(%(start_day)s::date, %(end_day)s::date, interval '1 day') AS d
),
per_day AS (
  SELECT day, sum(sessions_started) AS sessions, sum(queries) AS queries,
         sum(cache_hits) AS cache_hits, sum(errors) AS errors,
         fs_hist_quantile(fs_hist_merge(duration_hist), 0.5) AS p50,
         fs_hist_quantile(fs_hist_merge(duration_hist), 0.95) AS p95
  FROM daily GROUP BY day
),
per_type AS (
  SELECT day, session_type, sum(sessions_started) AS n FROM daily
  GROUP BY day, session_type HAVING sum(sessions_started) > 0
),
per_qtype AS (
  SELECT d.day, j.key AS query_type, sum(j.value::bigint) AS n
  FROM daily d CROSS JOIN LATERAL jsonb_each_text(d.query_type_counts) j
  GROUP BY d.day, j.key
)"""

_SERIES_SELECT = """
  (SELECT json_agg(day ORDER BY day) FROM days) AS labels,
  (SELECT json_build_object(
      'sessions', json_agg(coalesce(p.sessions, 0) ORDER BY d.day),
      'queries', json_agg(coalesce(p.queries, 0) ORDER BY d.day),
      'p50', json_agg(round(p.p50::numeric, 1) ORDER BY d.day),
      'p95', json_agg(round(p.p95::numeric, 1) ORDER BY d.day),
      'cache_hit_rate', json_agg(
          round(100.0 * p.cache_hits / nullif(p.queries, 0), 1) ORDER BY d.day),
      'error_rate', json_agg(round(100.0 * p.errors / nullif(p.queries, 0), 1) ORDER BY d.day))
   FROM days d LEFT JOIN per_day p USING (day)) AS per_day,
  (SELECT coalesce(json_object_agg(session_type, counts), '{{}}') FROM (
     SELECT t.session_type, json_agg(coalesce(x.n, 0) ORDER BY d.day) AS counts
     FROM days d CROSS JOIN (SELECT DISTINCT session_type FROM per_type) t
     LEFT JOIN per_type x ON x.day = d.day AND x.session_type = t.session_type
     GROUP BY t.session_type) s) AS by_type,
  (SELECT coalesce(json_object_agg(query_type, counts), '{{}}') FROM (
     SELECT q.query_type, json_agg(coalesce(x.n, 0) ORDER BY d.day) AS counts
     FROM days d CROSS JOIN (SELECT DISTINCT query_type FROM per_qtype) q
     LEFT JOIN per_qtype x ON x.day = d.day AND x.query_type = q.query_type
     GROUP BY q.query_type) s) AS by_query_type"""

_SERIES_SQL = "{with_sql}," + _SERIES_CTES + "\nSELECT" + _SERIES_SELECT
# The overview needs both: one statement, so the `daily` CTE (and its raw part) runs once.
_OVERVIEW_SQL = "{with_sql}," + _SERIES_CTES + "\nSELECT" + _STATS_SELECT + "," + _SERIES_SELECT


@reads_replica
def get_chart_series(
    session_type: str | None = None,
    days: int = 30,
    *,
    start: date | None = None,
    end: date | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Per-day series for the overview charts, one value per day of the period (0 or None when
    there is no data): sessions by type, queries by query type, duration p50/p95 (seconds),
    cache hit and error rates (percent)."""
    session_type = _validate_type(session_type)
    period = resolve_period(days, start, end)
    with_sql, params, _ = _daily_source(period, session_type, user_id)
    labels, per_day, by_type, by_query_type = _fetch_one(
        _SERIES_SQL.format(with_sql=with_sql), params
    )
    return _series_dict(labels, per_day, by_type, by_query_type)


def _series_dict(labels: list, per_day: dict, by_type: dict, by_query_type: dict) -> dict:
    """The chart series dictionary from the SQL row's parts."""
    return {
        "labels": labels,
        "sessions": per_day["sessions"],
        "queries": per_day["queries"],
        # Type order fixed by the enum, so colours stay put when a filter hides some types.
        "sessions_by_type": {t: by_type[t] for t in SessionType.values if t in by_type},
        "queries_by_type": dict(sorted(by_query_type.items(), key=lambda kv: -sum(kv[1]))),
        "duration_p50": per_day["p50"],
        "duration_p95": per_day["p95"],
        "cache_hit_rate": per_day["cache_hit_rate"],
        "error_rate": per_day["error_rate"],
    }


@reads_replica
def get_overview(
    session_type: str | None = None,
    days: int = 30,
    *,
    start: date | None = None,
    end: date | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(get_session_stats, get_chart_series) of one period and type, from one SQL statement."""
    session_type = _validate_type(session_type)
    period = resolve_period(days, start, end)
    with_sql, params, _ = _daily_source(period, session_type, None)
    params["top"] = TOP_ITEMS
    row = _fetch_one(_OVERVIEW_SQL.format(with_sql=with_sql), params)
    totals, by_type, tops = row[0], row[1], row[2]
    stats = _stats_dict(period, session_type, None, totals, by_type, tops, True)
    return stats, _series_dict(*row[3:7])


# ---- export -------------------------------------------------------------------------------------

# The rollup's columns less the internal total and the JSON breakdowns, in the same order.
EXPORT_COLUMNS = tuple(
    column
    for column in METRIC_COLUMNS
    if column
    not in {
        "total_duration_seconds",
        "duration_hist",
        "top_assets",
        "query_type_counts",
        "tag_counts",
    }
)

_EXPORT_SQL = """
{with_sql}
SELECT day, session_type, sum(sessions_started)::bigint, sum(sessions_completed)::bigint,
       sum(sessions_failed)::bigint, sum(sessions_abandoned)::bigint,
       sum(sessions_expired)::bigint, sum(queries)::bigint, sum(cache_hits)::bigint,
       sum(errors)::bigint, sum(messages)::bigint, sum(tool_calls)::bigint,
       round((sum(total_duration_seconds) / nullif(sum(sessions_started), 0))::numeric, 2),
       round(fs_hist_quantile(fs_hist_merge(duration_hist), 0.5)::numeric, 2),
       round(fs_hist_quantile(fs_hist_merge(duration_hist), 0.95)::numeric, 2),
       round(fs_hist_quantile(fs_hist_merge(duration_hist), 0.99)::numeric, 2),
       round(sum(queries)::numeric / nullif(sum(sessions_started), 0), 2),
       sum(tokens_in)::numeric, sum(tokens_out)::numeric, sum(cost),
       sum(requests)::bigint, round(sum(processing_seconds)::numeric, 3)
FROM daily
GROUP BY day, session_type
HAVING sum(sessions_started) > 0
ORDER BY day, session_type
"""


@reads_replica
def get_daily_rows(
    session_type: str | None = None,
    days: int = 30,
    *,
    start: date | None = None,
    end: date | None = None,
    user_id: str | None = None,
) -> list[dict[str, Any]]:
    """One row per (day, type) with sessions in the period, columns EXPORT_COLUMNS."""
    session_type = _validate_type(session_type)
    period = resolve_period(days, start, end)
    with_sql, params, _ = _daily_source(period, session_type, user_id)
    rows = _fetch_all(_EXPORT_SQL.format(with_sql=with_sql), params)
    return [dict(zip(EXPORT_COLUMNS, row, strict=True)) for row in rows]


def _plain(value: Any) -> Any:
    """JSON- and CSV-friendly scalars: dates as ISO text, decimals as floats."""
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Decimal) and value.as_tuple().exponent == 0:
        return int(value)  # token sums: numeric, since they can pass a bigint
    return float(value)


@reads_replica
def export_session_metrics(
    format: str = "csv",  # the seed's argument name
    session_type: str | None = None,
    days: int = 30,
    *,
    start: date | None = None,
    end: date | None = None,
    user_id: str | None = None,
) -> str:
    """Daily metrics of the period as CSV (one row per day and type) or JSON (stats + rows)."""
    if format not in EXPORT_FORMATS:
        raise InvalidInput("format", f"must be one of {', '.join(EXPORT_FORMATS)}, not {format!r}")
    rows = get_daily_rows(session_type, days, start=start, end=end, user_id=user_id)
    rows = [{name: _plain(value) for name, value in row.items()} for row in rows]
    if format == "json":
        stats = get_session_stats(user_id, session_type, days, start=start, end=end)
        return json.dumps({"stats": stats, "daily": rows}, indent=2, default=str)
    out = io.StringIO()
    writer = csvsafe.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


STATUS_LABELS = dict(SessionStatus.choices)
