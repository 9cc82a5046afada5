"""Selectors for the analyst features: users list, period comparison, autocomplete, drill-down.

Kept apart from analytics.py (whose rollups the archive work owns); everything here reads
through analytics' public selectors or an index named below.

Users list: a page is an indexed LIMIT query over UserPeriodSummary, the period's per-user
totals that user_summaries rebuilds with the metrics job (every 15 minutes) from
`period_users`' aggregate of the UserDailyMetric rows; the page states their "as of" time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.utils import timezone

from sessions_app import analytics, user_summaries
from sessions_app.exceptions import InvalidInput
from sessions_app.replica import read_connection

# ---- users list ---------------------------------------------------------------------------------

# URL sort keys of the users list ("user" sorts by id; the others are UserRow fields).
USER_SORTS = ("user", "sessions", "queries", "errors", "tokens", "cost", "last_active")
DEFAULT_USER_SORT = "-last_active"
USER_PERIODS = user_summaries.USER_PERIODS
USERS_PER_PAGE = 25
SUGGESTIONS = 8
# Highest code point: a prefix's range in the "C" collation ends just below prefix + this.
_TOP = "\U0010ffff"


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
    as_of: datetime | None = None  # when the totals were read (see user_summaries)


def parse_user_sort(sort: str) -> tuple[str, bool]:
    """("cost", descending) from "-cost"; InvalidInput naming `sort` for anything else."""
    name = sort.lstrip("-")
    if name not in USER_SORTS:
        raise InvalidInput("sort", f"must be one of {', '.join(USER_SORTS)}")
    return name, sort.startswith("-")


def _prefix_params(search: str) -> dict[str, str]:
    low = search.lower().replace("\x00", "")  # Postgres text cannot hold NUL
    return {"low": low, "high": low + _TOP}


def period_users(days: int) -> list[tuple]:
    """Every user with archived sessions started in the last `days` days, with their totals
    (user_id, sessions, queries, errors, tokens, cost, last_active), in id order: the
    aggregate the users list's summary is built from, read now."""
    sql, params = user_summaries.users_aggregate(days)
    return sorted(
        (r[0], int(r[1]), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0), r[5], r[6])
        for r in analytics._fetch_all(sql, params)
    )


_SUMMARY_COUNT_SQL = """
SELECT (SELECT as_of FROM sessions_app_userperiodsnapshot
        WHERE days = %(days)s AND period_end = %(period_end)s),
       count(*)
FROM sessions_app_userperiodsummary
WHERE days = %(days)s{search}
"""
_SUMMARY_PAGE_SQL = """
SELECT user_id, sessions, queries, errors, tokens, cost, last_active
FROM sessions_app_userperiodsummary
WHERE days = %(days)s{search}
ORDER BY {order}
LIMIT %(limit)s OFFSET %(offset)s
"""
_SUMMARY_SEARCH = (
    ' AND lower(user_id) COLLATE "C" >= %(low)s AND lower(user_id) COLLATE "C" < %(high)s'
)


def _user_order(name: str, descending: bool) -> str:
    """ORDER BY of a sort key: ties, and the "user" column, in code-point order (ascending
    whichever the direction); users without a last activity last either way."""
    direction = " DESC" if descending else ""
    if name == "user":
        return f'user_id COLLATE "C"{direction}'
    column = "last_active" if name == "last_active" else name
    nulls = " NULLS LAST" if name == "last_active" else ""  # the only nullable column
    return f'{column}{direction}{nulls}, user_id COLLATE "C"'


def _fetch(db: Any, sql: str, params: dict[str, Any]) -> list[tuple]:
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def list_users(
    search: str = "",
    sort: str = DEFAULT_USER_SORT,
    page: int = 1,
    days: int = 30,
    per_page: int = USERS_PER_PAGE,
) -> UserPage:
    """One page of the period's users whose id starts with `search` (any case), in `sort`
    order; ties and the "user" column in code-point order (A-Z before a-z).

    Two queries (freshness and count, then the page) over the period's summary; a summary
    missing or built on another day is rebuilt first (user_summaries.refresh_period)."""
    name, descending = parse_user_sort(sort)
    if days not in USER_PERIODS:
        raise InvalidInput("days", f"must be one of {', '.join(map(str, USER_PERIODS))}")
    search = search.replace("\x00", "").strip()
    params: dict[str, Any] = {
        "days": days,
        "period_end": analytics.resolve_period(days).end,
        **(_prefix_params(search) if search else {}),
    }
    where = _SUMMARY_SEARCH if search else ""
    count_sql = _SUMMARY_COUNT_SQL.format(search=where)
    db = read_connection()
    as_of, total = _fetch(db, count_sql, params)[0]
    if as_of is None:
        user_summaries.refresh_period(days, missing_only=True)
        db = connection  # where it was just written (a replica may lag)
        as_of, total = _fetch(db, count_sql, params)[0]
    pages = max((total + per_page - 1) // per_page, 1)
    page = min(max(int(page), 1), pages)
    page_sql = _SUMMARY_PAGE_SQL.format(search=where, order=_user_order(name, descending))
    rows = _fetch(db, page_sql, {**params, "limit": per_page, "offset": (page - 1) * per_page})
    chosen = [UserRow(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), r[5], r[6]) for r in rows]
    sort_key = f"{'-' if descending else ''}{name}"
    return UserPage(chosen, total, page, pages, sort_key, days, search, as_of)


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
