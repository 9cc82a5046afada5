"""Per-user questions read UserDailyMetric: same numbers as an aggregate over the raw sessions.

The reference below is what per-user stats computed from raw rows before the user rollups
(counts, sums, top lists, first and last activity, exact percentiles); every interface that
answers a per-user question (the user page, REST /stats, the MCP analytics tool, the users
list) must give the same numbers from the rollups, percentiles within the histogram's error.
"""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions_app import analytics, apikeys, explore, histogram
from sessions_app.metrics import compute_daily_metrics, day_bounds
from sessions_app.models import Session, UserDailyMetric
from sessions_app.templatetags.dashboard import user_path

pytestmark = pytest.mark.django_db

DAYS = 30

_RAW_SQL = """
WITH r AS (
  SELECT * FROM sessions_app_session
  WHERE user_id = %(user)s AND created_at >= %(start)s AND created_at < %(end)s
)
SELECT count(*), count(*) FILTER (WHERE status = 'completed'),
       count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'abandoned'),
       sum(query_count), sum(cache_hits), sum(error_count), sum(message_count),
       sum(tool_call_count), sum(tokens_in), sum(tokens_out), round(sum(cost)::numeric, 6),
       min(created_at), max(last_activity_at),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_seconds),
       (SELECT json_object_agg(session_type, n) FROM
          (SELECT session_type, count(*) AS n FROM r GROUP BY 1) t),
       (SELECT json_agg(json_build_array(item, n) ORDER BY n DESC, item) FROM
          (SELECT a AS item, count(*) AS n FROM r, unnest(r.assets) a GROUP BY 1
           ORDER BY n DESC, a LIMIT 10) x),
       (SELECT json_agg(json_build_array(item, n) ORDER BY n DESC, item) FROM
          (SELECT t AS item, count(*) AS n FROM r, unnest(r.tags) t GROUP BY 1
           ORDER BY n DESC, t LIMIT 10) x),
       (SELECT json_object_agg(k, n) FROM
          (SELECT k, sum(v::bigint) AS n FROM r, jsonb_each_text(r.query_type_counts) j(k, v)
           GROUP BY 1) x)
FROM r
"""


def raw_reference(user: str) -> dict:
    """A user's stats over the last DAYS days, aggregated from their raw archived sessions."""
    today = timezone.localdate()
    start, end = day_bounds(today - timedelta(days=DAYS - 1), today)
    with connection.cursor() as cursor:
        cursor.execute(_RAW_SQL, {"user": user, "start": start, "end": end})
        row = cursor.fetchone()
    return {
        "archived_sessions": row[0],
        "status": {"completed": row[1], "failed": row[2], "abandoned": row[3]},
        "total_queries": row[4],
        "cache_hits": row[5],
        "total_errors": row[6],
        "total_messages": row[7],
        "total_tool_calls": row[8],
        "tokens_in": int(row[9]),
        "tokens_out": int(row[10]),
        "total_cost": round(float(row[11]), 6),
        "first_session_at": row[12],
        "last_activity_at": row[13],
        "percentiles": row[14],
        "session_type_breakdown": row[15],
        "top_assets": [{"asset": a, "count": n} for a, n in row[16] or []],
        "popular_tags": [{"tag": t, "count": n} for t, n in row[17] or []],
        "query_type_distribution": row[18] or {},
    }


def assert_matches(stats: dict, reference: dict, *, query_types: bool = True) -> None:
    for key in (
        "archived_sessions",
        "total_queries",
        "cache_hits",
        "total_errors",
        "total_messages",
        "total_tool_calls",
        "tokens_in",
        "tokens_out",
        "total_cost",
        "session_type_breakdown",
        "top_assets",
        "popular_tags",
    ):
        assert stats[key] == reference[key], key
    for status, count in reference["status"].items():
        assert stats["status_breakdown"][status] == count, status
    if query_types:
        assert stats["query_type_distribution"] == reference["query_type_distribution"]
    for name, exact in zip(("p50", "p95", "p99"), reference["percentiles"], strict=True):
        got = stats.get(f"duration_{name}_seconds")
        if got is None:  # REST and MCP leave p99 out
            continue
        assert abs(got - exact) <= histogram.RELATIVE_ERROR * exact + 0.01, (name, got, exact)


@pytest.fixture
def seeded() -> list[str]:
    """A seeded month of sessions (COPY path, folded as it writes); users busiest first."""
    call_command("seed_demo", "--sessions=900", f"--days={DAYS}", "--live=0", "--seed=5",
                 "--no-progress", verbosity=0)  # fmt: skip
    users = [
        row["user_id"]
        for row in Session.objects.exclude(user_id="")
        .values("user_id")
        .order_by()
        .annotate(n=Count("id"))
        .order_by("-n", "user_id")
    ]
    assert len(users) > 3
    return users


def test_user_summary_matches_raw_sessions_and_reads_no_session_rows(seeded):
    # Days without any session have no rollup rows unless a recompute wrote zero rows for
    # them; then the whole period is covered and nothing reads raw sessions.
    today = timezone.localdate()
    compute_daily_metrics(today - timedelta(days=DAYS - 1), today)
    for user in seeded[:3]:
        reference = raw_reference(user)
        with CaptureQueriesContext(connection) as queries:
            summary = analytics.get_user_session_summary(user, days=DAYS)
        assert_matches(summary, reference)
        assert summary["first_session_at"] == reference["first_session_at"]
        assert summary["last_activity_at"] == reference["last_activity_at"]
        # Rollups only: the user's raw sessions are not aggregated on the request path.
        assert not [q for q in queries if "sessions_app_session" in q["sql"]]


def test_rest_stats_and_mcp_give_the_user_the_same_numbers(seeded, client, monkeypatch):
    from sessions_app.mcp import tools
    from sessions_app.mcp.tools import AnalyticsArgs, _analytics_sync

    # The tool drops aged connections as a request would; the test's transaction must stay.
    monkeypatch.setattr(tools, "close_old_connections", lambda: None)
    user = seeded[0]
    reference = raw_reference(user)
    _, secret = apikeys.create_api_key("reader", ["read"])
    response = client.get(
        "/api/v1/stats",
        {"user_id": user, "days": DAYS},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 200, response.content
    rest = response.json()
    assert_matches(rest, reference)
    mcp = _analytics_sync(AnalyticsArgs(userId=user, days=DAYS))
    assert mcp["total_sessions"] == rest["total_sessions"] == reference["archived_sessions"]
    for key in ("total_queries", "total_errors", "total_cost", "duration_p95_seconds"):
        assert mcp[key] == rest[key], key


def test_user_page_shows_the_rollup_numbers(seeded, analyst_client):
    user = seeded[0]
    reference = raw_reference(user)
    response = analyst_client.get(user_path(user))
    assert response.status_code == 200
    summary = response.context["summary"]
    assert_matches(summary, reference, query_types=False)
    assert summary["last_activity_at"] == reference["last_activity_at"]
    # The page still lists the user's newest archived sessions (an indexed LIMIT query).
    assert response.context["page"].rows


def test_users_list_sums_the_user_rollups(seeded):
    rows = {row[0]: row for row in explore.period_users(DAYS)}
    for user in seeded[:3]:
        reference = raw_reference(user)
        _, sessions, queries, errors, tokens, cost, last = rows[user]
        assert (sessions, queries, errors) == (
            reference["archived_sessions"],
            reference["total_queries"],
            reference["total_errors"],
        )
        assert tokens == reference["tokens_in"] + reference["tokens_out"]
        assert round(float(cost), 6) == reference["total_cost"]
        assert last == reference["last_activity_at"]


def test_users_list_pages_show_the_raw_numbers_in_order(seeded):
    # Paged in SQL from the period's summary: every user once, in sort order, with the numbers
    # of an aggregate over their raw sessions.
    def page(n: int) -> explore.UserPage:
        return explore.list_users(sort="-sessions", days=DAYS, page=n, per_page=7)

    first = page(1)
    rows = [row for n in range(1, first.pages + 1) for row in page(n).rows]
    assert first.total == len(rows) == len(explore.period_users(DAYS)) == len(seeded)
    keys = [(-row.sessions, row.user_id.encode()) for row in rows]
    assert keys == sorted(keys)  # ties in code-point order
    for row in (r for r in rows if r.user_id in seeded[:3]):
        reference = raw_reference(row.user_id)
        assert (row.sessions, row.queries, row.errors) == (
            reference["archived_sessions"],
            reference["total_queries"],
            reference["total_errors"],
        )
        assert row.tokens == reference["tokens_in"] + reference["tokens_out"]
        assert round(float(row.cost), 6) == reference["total_cost"]
        assert row.last_active == reference["last_activity_at"]


def test_backfill_rebuilds_user_rollups_of_kept_sessions(seeded):
    from sessions_app.metrics import backfill_user_metrics

    before = sorted(UserDailyMetric.objects.values_list("user_id", "day", "session_type"))
    UserDailyMetric.objects.all().delete()
    assert backfill_user_metrics() == len(before)
    summary = analytics.get_user_session_summary(seeded[0], days=DAYS)
    assert_matches(summary, raw_reference(seeded[0]))
