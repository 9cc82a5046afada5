"""Analytics selectors against hand-computed values: rollups, raw today, deltas, live, users."""

import csv
import io
import json
from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from sessions_app import analytics, histogram
from sessions_app.exceptions import InvalidInput
from sessions_app.metrics import compute_daily_metrics
from sessions_app.models import Session
from tests.factories import archived_session, archived_sessions, live_session, redis_unavailable

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_down():
    with redis_unavailable():
        yield


def approx_hist(durations, q) -> float:
    """The q-quantile the rollups' histograms give for these durations, rounded as stats are."""
    return round(histogram.quantile(histogram.build(durations), q), 2)


def local(day, hour, minute=0) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def earlier_today() -> datetime:
    """A moment today, before now, whatever the time of day the test runs at."""
    start = timezone.make_aware(datetime.combine(timezone.localdate(), time.min))
    return start + (timezone.now() - start) / 2


@pytest.fixture
def days():
    today = timezone.localdate()
    return today - timedelta(days=2), today - timedelta(days=1), today


@pytest.fixture
def history(days):
    """Five archived sessions over three days (two rolled up, today raw) and one live session.

    d1: A equity completed 100 s (3 queries), A2 equity completed 500 s, B crypto abandoned 300 s
    d2: C equity failed 200 s
    today: D equity expired 400 s (raw: no rollup yet); E live equity (Redis)
    """
    d1, d2, _ = days
    archived_sessions(
        [
            {
                "created_at": local(d1, 10),
                "user_id": "user-1",
                "duration_seconds": 100,
                "assets": ["AAPL", "MSFT"],
                "tags": ["earnings"],
                "queries": [
                    {"query_type": "price", "cache_hit": True},
                    {"query_type": "price"},
                    {"query_type": "news", "error": "feed down"},
                ],
                "tool_calls": [{"tokens_in": 100, "tokens_out": 50, "cost": 0.5}],
            },
            {
                "created_at": local(d1, 10, 30),
                "user_id": "user-1",
                "duration_seconds": 500,
                "assets": ["MSFT"],
            },
            {
                "created_at": local(d1, 11),
                "user_id": "user-2",
                "session_type": "crypto",
                "status": "abandoned",
                "duration_seconds": 300,
                "assets": ["BTC"],
                "tags": ["defi"],
                "queries": [{"query_type": "price", "cache_hit": True}],
            },
            {
                "created_at": local(d2, 12),
                "user_id": "user-2",
                "status": "failed",
                "duration_seconds": 200,
                "assets": ["AAPL"],
                "queries": [{"query_type": "technical"}],
            },
        ]
    )
    compute_daily_metrics(d1, d2)
    archived_session(
        created_at=earlier_today(),
        user_id="user-1",
        status="expired",
        duration_seconds=400,
        assets=["AAPL"],
        tags=["earnings"],
        queries=[{"query_type": "price", "cache_hit": True}, {"query_type": "fundamentals"}],
    )
    live_session(user_id="user-1", assets=["NVDA"], queries=[{"query_type": "price"}])


def test_stats_combine_rollups_raw_today_and_live(history):
    stats = analytics.get_session_stats(days=7)

    assert stats["archived_sessions"] == 5
    assert stats["active_sessions"] == 1
    assert stats["total_sessions"] == 6
    assert stats["live_available"] is True
    # 7 archived queries + the live session's one (live counters count too, issue 10).
    assert stats["total_queries"] == 8
    assert stats["live_counters_complete"] is True
    assert stats["cache_hits"] == 3
    assert stats["cache_hit_rate"] == round(3 / 8, 4)
    assert stats["total_errors"] == 1
    assert stats["error_rate"] == round(1 / 9, 4)  # 8 queries + 1 tool call
    assert stats["completion_rate"] == 0.4
    assert stats["abandonment_rate"] == 0.2
    assert stats["failure_rate"] == 0.2
    assert stats["expiry_rate"] == 0.2
    assert stats["avg_duration_seconds"] == 300  # (100 + 500 + 300 + 200 + 400) / 5
    assert stats["avg_queries_per_session"] == 1.4  # per archived session: 7 / 5
    # Real percentiles of the five durations, read from the merged histograms.
    durations = [100, 500, 300, 200, 400]
    assert stats["duration_p50_seconds"] == approx_hist(durations, 0.5)
    assert stats["duration_p50_seconds"] == pytest.approx(300, rel=histogram.RELATIVE_ERROR)
    assert stats["duration_p95_seconds"] == approx_hist(durations, 0.95)
    assert stats["percentiles"] == "histogram"
    assert (stats["tokens_in"], stats["tokens_out"], stats["total_tokens"]) == (100, 50, 150)
    assert stats["total_cost"] == 0.5
    assert stats["top_assets"] == [
        {"asset": "AAPL", "count": 3},
        {"asset": "MSFT", "count": 2},
        {"asset": "BTC", "count": 1},
    ]
    assert stats["popular_tags"] == [{"tag": "earnings", "count": 2}, {"tag": "defi", "count": 1}]
    assert stats["query_type_distribution"] == {
        "price": 4,
        "fundamentals": 1,
        "news": 1,
        "technical": 1,
    }
    assert stats["session_type_breakdown"] == {"equity": 5, "crypto": 1}
    assert stats["status_breakdown"] == {
        "active": 1,
        "completed": 2,
        "failed": 1,
        "abandoned": 1,
        "expired": 1,
    }


def test_past_days_come_from_rollups_not_raw_rows(history, days):
    # Retention deletes raw sessions; the rolled-up days must keep their numbers.
    today = days[2]
    Session.objects.filter(created_at__lt=local(today, 0)).delete()
    stats = analytics.get_session_stats(days=7)
    assert stats["archived_sessions"] == 5
    assert stats["total_queries"] == 8  # 7 archived (rollups) + 1 live


def test_sessions_archived_after_the_rollup_are_added_once(history, days):
    d2 = days[1]
    archived_session(
        created_at=local(d2, 13),
        duration_seconds=600,
        assets=["AAPL"],
        queries=[{"query_type": "news"}] * 2,
        archived_at=timezone.now(),  # after the rollup of d2 was computed
    )
    stats = analytics.get_session_stats(days=7)
    assert stats["archived_sessions"] == 6
    assert stats["total_queries"] == 10  # 9 archived + 1 live
    assert stats["query_type_distribution"]["news"] == 3
    assert stats["top_assets"][0] == {"asset": "AAPL", "count": 4}

    # Recomputing the day folds the late session into the rollup: same totals, no double count.
    compute_daily_metrics(d2, d2)
    again = analytics.get_session_stats(days=7)
    assert (again["archived_sessions"], again["total_queries"]) == (6, 10)


def test_type_filter(history):
    stats = analytics.get_session_stats(session_type="crypto", days=7)
    assert (stats["archived_sessions"], stats["active_sessions"]) == (1, 0)
    assert stats["total_queries"] == 1
    assert stats["abandonment_rate"] == 1.0
    assert stats["top_assets"] == [{"asset": "BTC", "count": 1}]
    assert stats["session_type_breakdown"] == {"crypto": 1}


def test_range_without_today_has_no_live_or_raw_today(history, days):
    d1, d2, _ = days
    stats = analytics.get_session_stats(start=d1, end=d2)
    assert stats["period"] == {"start": d1.isoformat(), "end": d2.isoformat(), "days": 2}
    assert (stats["archived_sessions"], stats["active_sessions"]) == (4, 0)
    assert stats["total_queries"] == 5


def test_user_stats_read_user_rollups_with_histogram_percentiles(history):
    stats = analytics.get_session_stats(user_id="user-2", days=7)
    assert stats["archived_sessions"] == 2  # B (crypto) and C (equity)
    assert stats["active_sessions"] == 0
    assert stats["total_queries"] == 2
    assert stats["percentiles"] == "histogram"
    # percentile_cont of 200 and 300 gives 250 and 295; the histograms are within 2% of it.
    assert stats["duration_p50_seconds"] == pytest.approx(250, rel=histogram.RELATIVE_ERROR)
    assert stats["duration_p95_seconds"] == pytest.approx(295, rel=histogram.RELATIVE_ERROR)
    assert stats["session_type_breakdown"] == {"crypto": 1, "equity": 1}

    user1 = analytics.get_session_stats(user_id="user-1", days=7)
    assert (user1["archived_sessions"], user1["active_sessions"]) == (3, 1)
    assert user1["total_sessions"] == 4


def test_user_summary_has_first_and_last_activity(history, days):
    d1, d2, _ = days
    summary = analytics.get_user_session_summary("user-2", days=7)
    assert summary["archived_sessions"] == 2
    assert summary["first_session_at"] == local(d1, 11)
    assert summary["last_activity_at"] == local(d2, 12) + timedelta(seconds=200)
    empty = analytics.get_user_session_summary("nobody", days=7)
    assert (empty["total_sessions"], empty["first_session_at"]) == (0, None)


def test_chart_series_per_day(history, days):
    today = days[2]
    series = analytics.get_chart_series(days=5)
    assert series["labels"] == [(today - timedelta(days=n)).isoformat() for n in range(4, -1, -1)]
    assert series["sessions"] == [0, 0, 3, 1, 1]
    assert series["sessions_by_type"] == {"equity": [0, 0, 2, 1, 1], "crypto": [0, 0, 1, 0, 0]}
    assert series["queries_by_type"] == {
        "price": [0, 0, 3, 0, 1],
        "fundamentals": [0, 0, 0, 0, 1],
        "news": [0, 0, 1, 0, 0],
        "technical": [0, 0, 0, 1, 0],
    }
    assert series["cache_hit_rate"] == [None, None, 50.0, 0.0, 50.0]
    one = [round(approx_hist([d], 0.5), 1) for d in (200, 400)]
    d1 = [100, 500, 300]
    assert series["duration_p50"] == [None, None, round(approx_hist(d1, 0.5), 1), *one]
    assert series["duration_p95"] == [None, None, round(approx_hist(d1, 0.95), 1), *one]


def test_overview_is_stats_and_series_in_one_statement(history, django_assert_max_num_queries):
    with django_assert_max_num_queries(5):
        stats, series = analytics.get_overview("equity", days=5)
    assert stats == analytics.get_session_stats(session_type="equity", days=5)
    assert series == analytics.get_chart_series("equity", days=5)
    assert series["sessions"] == [0, 0, 2, 1, 1]


def test_days_without_rollups_are_read_raw(days):
    d1, d2, _ = days
    archived_sessions(
        [
            {"created_at": local(d1, 9), "duration_seconds": 100},
            {"created_at": local(d2, 9), "duration_seconds": 300, "session_type": "macro"},
        ]
    )
    stats, series = analytics.get_overview(days=3)
    assert stats["archived_sessions"] == 2
    assert stats["percentiles"] == "histogram"
    assert stats["duration_p50_seconds"] == approx_hist([100, 300], 0.5)
    assert series["sessions_by_type"] == {"equity": [1, 0, 0], "macro": [0, 1, 0]}


def test_export_csv_and_json(history, days):
    d1, d2, today = days
    text = analytics.export_session_metrics("csv", days=7)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["day"], r["session_type"]) for r in rows] == [
        (d1.isoformat(), "crypto"),
        (d1.isoformat(), "equity"),
        (d2.isoformat(), "equity"),
        (today.isoformat(), "equity"),
    ]
    equity = rows[1]
    assert equity["sessions_started"] == "2"
    assert equity["sessions_completed"] == "2"
    assert equity["queries"] == "3"
    assert float(equity["avg_duration_seconds"]) == 300
    assert float(equity["p50_duration_seconds"]) == approx_hist([100, 500], 0.5)
    assert float(equity["p95_duration_seconds"]) == approx_hist([100, 500], 0.95)
    assert float(equity["cost"]) == 0.5

    data = json.loads(analytics.export_session_metrics("json", session_type="equity", days=7))
    assert data["stats"]["archived_sessions"] == 4
    assert [row["sessions_started"] for row in data["daily"]] == [2, 1, 1]


def test_bad_input_names_the_field(db):
    with pytest.raises(InvalidInput) as error:
        analytics.get_session_stats(days=0)
    assert error.value.field == "days"
    with pytest.raises(InvalidInput) as error:
        analytics.get_session_stats(session_type="stocks")
    assert error.value.field == "session_type"
    with pytest.raises(InvalidInput) as error:
        analytics.export_session_metrics("xml")
    assert error.value.field == "format"
    today = timezone.localdate()
    with pytest.raises(InvalidInput) as error:
        analytics.get_session_stats(start=today, end=today - timedelta(days=1))
    assert error.value.field == "start"


def test_live_data_unavailable_when_redis_is_down(history, redis_down):
    stats = analytics.get_session_stats(days=7)
    assert stats["live_available"] is False
    assert stats["active_sessions"] == 0
    assert stats["total_sessions"] == stats["archived_sessions"] == 5


def test_stats_cost_a_fixed_number_of_queries(history, django_assert_max_num_queries):
    # Rollup coverage, then one statement for every figure (inside a savepoint that turns JIT
    # off), whatever the period length.
    for days in (7, 90):
        with django_assert_max_num_queries(5):
            analytics.get_session_stats(days=days)
        with django_assert_max_num_queries(5):
            analytics.get_chart_series(days=days)
