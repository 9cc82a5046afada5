"""Selectors for the analyst features: users list, period comparison, autocomplete, drill-down.

Kept apart from analytics.py (whose rollups the archive work owns); everything here reads
through analytics' public selectors or an index named below.

Users list: `period_users` sums the period's UserDailyMetric rows per user (one row per user,
day and type, whatever the session count; raw rows only for days no rollup covers). That list
is kept for USERS_SNAPSHOT_SECONDS per process, so sorting, paging and every keystroke of the
search reuse it instead of aggregating again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from sessions_app import analytics
from sessions_app.exceptions import InvalidInput

# ---- users list ---------------------------------------------------------------------------------

# URL sort keys of the users list ("user" sorts by id; the others are UserRow fields).
USER_SORTS = ("user", "sessions", "queries", "errors", "tokens", "cost", "last_active")
DEFAULT_USER_SORT = "-last_active"
USER_PERIODS = (7, 30, 90)
USERS_PER_PAGE = 25
SUGGESTIONS = 8
# Highest code point: a prefix's range in the "C" collation ends just below prefix + this.
_TOP = "\U0010ffff"

_USERS_SQL = """{with_sql}
SELECT user_id, sum(sessions_started), sum(queries), sum(errors), sum(tokens_in + tokens_out),
       sum(cost), max(last_activity_at)
FROM daily
WHERE user_id <> ''
GROUP BY user_id
HAVING sum(sessions_started) > 0
"""
# One aggregate per period serves every sort, page and keystroke of the search for this long
# (per process); a newly archived session (max(archived_at), one index probe) renews it.
USERS_SNAPSHOT_SECONDS = 60


@dataclass
class UserRow:
    user_id: str
    sessions: int
    queries: int
    errors: int
    tokens: int
    cost: Decimal
    last_active: datetime | None


@dataclass
class UserPage:
    rows: list[UserRow]
    total: int  # users matching, over the whole period
    page: int
    pages: int
    sort: str
    days: int
    search: str


def parse_user_sort(sort: str) -> tuple[str, bool]:
    """("cost", descending) from "-cost"; InvalidInput naming `sort` for anything else."""
    name = sort.lstrip("-")
    if name not in USER_SORTS:
        raise InvalidInput("sort", f"must be one of {', '.join(USER_SORTS)}")
    return name, sort.startswith("-")


def _prefix_params(search: str) -> dict[str, str]:
    low = search.lower().replace("\x00", "")  # Postgres text cannot hold NUL
    return {"low": low, "high": low + _TOP}


# Column of each sort key in a snapshot row (user_id, sessions, queries, errors, tokens, cost,
# last_active).
_SORT_INDEX = {name: i for i, name in enumerate(("user", *USER_SORTS[1:]))}


def period_users(days: int) -> list[tuple]:
    """Every user with archived sessions started in the last `days` days, with their totals, as
    plain tuples in id order (cheap to cache, copy and sort)."""
    today = timezone.localdate()
    latest = analytics._fetch_one("SELECT max(archived_at) FROM sessions_app_session", {})[0]
    key = f"explore:users:{days}:{today.isoformat()}:{latest.isoformat() if latest else '-'}"
    rows = cache.get(key)
    if rows is None:
        period = analytics.resolve_period(days)
        with_sql, params, _ = analytics._daily_source(period, None, None, False, per_user=True)
        rows = sorted(
            (r[0], int(r[1]), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0), r[5], r[6])
            for r in analytics._fetch_all(_USERS_SQL.format(with_sql=with_sql), params)
        )
        cache.set(key, rows, USERS_SNAPSHOT_SECONDS)
    return rows


def list_users(
    search: str = "",
    sort: str = DEFAULT_USER_SORT,
    page: int = 1,
    days: int = 30,
    per_page: int = USERS_PER_PAGE,
) -> UserPage:
    """One page of the period's users whose id starts with `search` (any case), in `sort`
    order; ties and the "user" column in code-point order (A-Z before a-z)."""
    name, descending = parse_user_sort(sort)
    if days not in USER_PERIODS:
        raise InvalidInput("days", f"must be one of {', '.join(map(str, USER_PERIODS))}")
    search = search.replace("\x00", "").strip()
    rows = period_users(days)  # already in id order
    if search:
        low = search.lower()
        rows = [row for row in rows if row[0].lower().startswith(low)]
    column = _SORT_INDEX[name]
    if column == 0:
        rows = rows[::-1] if descending else rows
    else:
        present = [row for row in rows if row[column] is not None]
        missing = [row for row in rows if row[column] is None]
        # A stable sort: equal values keep the id order whichever the direction.
        present.sort(key=itemgetter(column), reverse=descending)
        rows = present + missing
    total = len(rows)
    pages = max((total + per_page - 1) // per_page, 1)
    page = min(max(int(page), 1), pages)
    chosen = [UserRow(*row) for row in rows[(page - 1) * per_page : page * per_page]]
    return UserPage(chosen, total, page, pages, f"{'-' if descending else ''}{name}", days, search)


_USER_IDS_SQL = """
WITH RECURSIVE ids(k, id) AS (
  (SELECT lower(user_id) COLLATE "C", user_id COLLATE "C" FROM sessions_app_session
   WHERE lower(user_id) COLLATE "C" >= %(low)s AND lower(user_id) COLLATE "C" < %(high)s
   ORDER BY 1, 2 LIMIT 1)
  UNION ALL
  SELECT n.k, n.id FROM ids CROSS JOIN LATERAL (
    SELECT lower(user_id) COLLATE "C" AS k, user_id COLLATE "C" AS id FROM sessions_app_session
    WHERE (lower(user_id) COLLATE "C", user_id COLLATE "C") > (ids.k, ids.id)
      AND lower(user_id) COLLATE "C" < %(high)s
    ORDER BY 1, 2 LIMIT 1) n
)
SELECT id FROM ids LIMIT %(limit)s
"""


def user_ids_starting(prefix: str, limit: int = SUGGESTIONS) -> list[str]:
    """Distinct user ids starting with `prefix`, any case: a skip scan of session_user_ci_idx
    (one index probe per id returned, however many sessions each user has)."""
    prefix = prefix.strip()
    if not prefix:
        return []
    rows = analytics._fetch_all(_USER_IDS_SQL, {**_prefix_params(prefix), "limit": limit})
    return [row[0] for row in rows]


def user_ids_matching(user: str) -> list[str]:
    """Every stored spelling of `user`, ignoring case ("David" -> ["david", "David"])."""
    user = user.replace("\x00", "").strip()
    if not user:
        return []
    low = user.lower()
    rows = analytics._fetch_all(_USER_IDS_SQL, {"low": low, "high": low + "\x01", "limit": 20})
    return [row[0] for row in rows] or [user]


def user_suggestions(user_id: str, limit: int = 5) -> list[str]:
    """Known user ids close to an unknown one: those sharing its longest prefix (min 1 char)."""
    for length in (len(user_id), 6, 4, 2, 1):
        prefix = user_id[:length]
        if prefix and length <= len(user_id):
            found = [u for u in user_ids_starting(prefix, limit) if u != user_id]
            if found:
                return found
    return []


# ---- tags and assets: autocomplete and case-insensitive matching --------------------------------

# Days of rollups that feed tag and asset suggestions (their top 25 per day and type).
SUGGEST_DAYS = 90

_ROLLUP_KEYS_SQL = """
SELECT k, sum(v::bigint) AS n
FROM sessions_app_dailymetric d CROSS JOIN LATERAL jsonb_each_text(d.{column}) AS j(k, v)
WHERE d.day >= %(since)s AND lower(k) LIKE %(pattern)s
GROUP BY k ORDER BY n DESC, k LIMIT %(limit)s
"""
_ROLLUP_COLUMNS = {"tag": "tag_counts", "asset": "top_assets"}


def _like_prefix(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def rollup_values(kind: str, prefix: str, limit: int = SUGGESTIONS) -> list[str]:
    """Tags or assets seen in the last SUGGEST_DAYS days' rollups starting with `prefix` (any
    case), most used first."""
    column = _ROLLUP_COLUMNS[kind]
    since = timezone.localdate() - timedelta(days=SUGGEST_DAYS)
    rows = analytics._fetch_all(
        _ROLLUP_KEYS_SQL.format(column=column),
        {"since": since, "pattern": _like_prefix(prefix), "limit": limit},
    )
    return [row[0] for row in rows]


def suggest(kind: str, prefix: str, limit: int = SUGGESTIONS) -> list[str]:
    """Autocomplete values for the history filters: users, tags or assets."""
    prefix = prefix.replace("\x00", "").strip()[:64]
    if not prefix:
        return []
    if kind == "user":
        return user_ids_starting(prefix, limit)
    if kind in _ROLLUP_COLUMNS:
        return rollup_values(kind, prefix, limit)
    raise InvalidInput("kind", f"must be one of user, {', '.join(_ROLLUP_COLUMNS)}")


def tag_spellings(tag: str) -> list[str]:
    """The spellings of `tag` to match, ignoring case: every casing the rollups have seen, plus
    the common ones (as typed, lower, Capitalised, UPPER)."""
    tag = tag.strip()
    if not tag:
        return []
    since = timezone.localdate() - timedelta(days=SUGGEST_DAYS)
    seen = analytics._fetch_all(
        "SELECT DISTINCT k FROM sessions_app_dailymetric d "
        "CROSS JOIN LATERAL jsonb_object_keys(d.tag_counts) AS k "
        "WHERE d.day >= %(since)s AND lower(k) = %(low)s LIMIT 20",
        {"since": since, "low": tag.lower()},
    )
    spellings = {tag, tag.lower(), tag.capitalize(), tag.upper(), tag.title()}
    spellings.update(row[0] for row in seen)
    return sorted(spellings)


# ---- period comparison --------------------------------------------------------------------------

# KPI -> (stats key, how the change reads: "pct" relative change, "pp" percentage points,
# and whether a rise is good (True), bad (False) or neither (None)).
KPI_CHANGES = {
    "sessions": ("total_sessions", "pct", None),
    "queries": ("total_queries", "pct", None),
    "avg_duration": ("avg_duration_seconds", "pct", None),
    "completion": ("completion_rate", "pp", True),
    "abandonment": ("abandonment_rate", "pp", False),
    "cache_hit_rate": ("cache_hit_rate", "pp", True),
    "error_rate": ("error_rate", "pp", False),
    "tokens": ("total_tokens", "pct", None),
    "cost": ("total_cost", "pct", None),
}


def previous_period(period: analytics.Period) -> analytics.Period:
    """The period of equal length just before `period`."""
    end = period.start - timedelta(days=1)
    return analytics.Period(end - timedelta(days=period.days - 1), end)


def _change(now: float, before: float, better_when_up: bool | None) -> dict[str, Any]:
    diff = float(now) - float(before)
    pct = None if not before else 100.0 * diff / float(before)
    better = None if better_when_up is None or abs(diff) < 1e-9 else (diff > 0) == better_when_up
    return {"now": now, "before": before, "diff": diff, "pct": pct, "better": better}


def compare_stats(stats: dict[str, Any], previous: dict[str, Any]) -> dict[str, dict | None]:
    """{kpi: {now, before, diff, pct, better}} for every KPI_CHANGES key; None when the previous
    period has no sessions at all (nothing to compare with)."""
    if not previous["total_sessions"]:
        return dict.fromkeys(KPI_CHANGES)
    return {
        kpi: _change(stats[key], previous[key], better)
        for kpi, (key, _, better) in KPI_CHANGES.items()
    }


def get_overview_comparison(
    session_type: str | None = None,
    days: int = 30,
    *,
    start: date | None = None,
    end: date | None = None,
) -> tuple[dict, dict, dict, dict]:
    """(stats, series, previous stats, previous series): analytics.get_overview for the period
    and for the one of equal length before it (two statements in all)."""
    period = analytics.resolve_period(days, start, end)
    stats, series = analytics.get_overview(session_type, start=period.start, end=period.end)
    before = previous_period(period)
    prev_stats, prev_series = analytics.get_overview(
        session_type, start=before.start, end=before.end
    )
    return stats, series, prev_stats, prev_series


def totals_per_day(series: dict[str, Any], key: str) -> list[int]:
    """A stacked series' per-day total (sessions or queries of every type)."""
    return [int(v or 0) for v in series[key]]
