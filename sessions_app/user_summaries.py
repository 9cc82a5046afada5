"""Keeping the users list's per-user period totals (UserPeriodSummary) current.

The list used to sum every user's UserDailyMetric rows of the period on each request (~433k
rows for 30 days at 1M sessions, ~1.25 s). Instead each period's totals are built here as one
INSERT ... SELECT of that same aggregate (`users_aggregate`, also behind explore.period_users),
stamped with the time they were read (UserPeriodSnapshot.as_of), so a page is an indexed
LIMIT query. The metrics job rebuilds every period (every 15 minutes): that bounds the list's
staleness, which the page states. A period whose summary is missing or was built on another
day (the window moved at midnight) is built by the first request that needs it.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from sessions_app import analytics

# The users list's periods, in days (its form's choices).
USER_PERIODS = (7, 30, 90)
# pg_advisory_xact_lock key of one period's rebuild (+ days): two rebuilds of a period at once
# (the job and a request) would both delete, then both insert the same (days, user_id) rows.
_LOCK_KEY = 0x75535000

_USERS_SELECT = """
SELECT user_id, sum(sessions_started) AS sessions, sum(queries) AS queries,
       sum(errors) AS errors, sum(tokens_in + tokens_out) AS tokens, sum(cost) AS cost,
       max(last_activity_at) AS last_active
FROM daily
WHERE user_id <> ''
GROUP BY user_id
HAVING sum(sessions_started) > 0
"""

_INSERT_SQL = """
INSERT INTO sessions_app_userperiodsummary
  (days, user_id, sessions, queries, errors, tokens, cost, last_active)
SELECT %(summary_days)s, t.* FROM ({select}) t
"""


def users_aggregate(days: int) -> tuple[str, dict[str, Any]]:
    """(SQL, params) of every user with archived sessions started in the last `days` days and
    their totals (user_id, sessions, queries, errors, tokens, cost, last_active), summed from
    the period's UserDailyMetric rows (raw sessions only for days no rollup covers)."""
    with_sql, params = _source(days)
    return f"{with_sql}{_USERS_SELECT}", params


def _source(days: int) -> tuple[str, dict[str, Any]]:
    period = analytics.resolve_period(days)
    with_sql, params, _ = analytics._daily_source(period, None, None, False, per_user=True)
    return with_sql, params


def refresh_period(days: int, *, missing_only: bool = False) -> int | None:
    """Rebuild the users list's summary of the last `days` days; the users it holds.

    One transaction: readers see the previous summary until it commits. With `missing_only`
    (a request finding none for today), None if another rebuild made it meanwhile."""
    if days not in USER_PERIODS:
        raise ValueError(f"days: must be one of {USER_PERIODS}")
    period_end = analytics.resolve_period(days).end
    with_sql, params = _source(days)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY + days])
        if missing_only:
            cur.execute(
                "SELECT 1 FROM sessions_app_userperiodsnapshot WHERE days = %s AND period_end = %s",
                [days, period_end],
            )
            if cur.fetchone():
                return None
        cur.execute("DELETE FROM sessions_app_userperiodsummary WHERE days = %s", [days])
        as_of = timezone.now()  # before the aggregate reads: sessions after it may be missing
        insert = f"{with_sql}{_INSERT_SQL.format(select=_USERS_SELECT)}"
        cur.execute(insert, {**params, "summary_days": days})
        users = cur.rowcount
        cur.execute(
            "INSERT INTO sessions_app_userperiodsnapshot (days, period_end, as_of)"
            " VALUES (%s, %s, %s) ON CONFLICT (days)"
            " DO UPDATE SET period_end = EXCLUDED.period_end, as_of = EXCLUDED.as_of",
            [days, period_end, as_of],
        )
    return users


def refresh_user_summaries() -> dict[int, int]:
    """Rebuild every period's summary (the metrics job's last step); users per period."""
    return {days: refresh_period(days) or 0 for days in USER_PERIODS}  # never None here
