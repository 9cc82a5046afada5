"""compute_daily_metrics: (day, type) rollups from archived rows against hand-computed values."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from sessions_app.histogram import RELATIVE_ERROR
from sessions_app.metrics import compute_daily_metrics
from sessions_app.models import DailyMetric, Session, SessionType
from tests.factories import archived_sessions

D0, D1, D2, D3 = date(2025, 3, 9), date(2025, 3, 10), date(2025, 3, 11), date(2025, 3, 12)

pytestmark = pytest.mark.django_db


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


@pytest.fixture
def three_days():
    """Four sessions over D1-D2 plus one just before D1 that must stay out of the range."""
    return archived_sessions(
        [
            {
                "created_at": at(D1, 9),
                "status": "completed",
                "duration_seconds": 100,
                "assets": ["AAPL", "MSFT"],
                "tags": ["earnings"],
                "queries": [
                    {"query_type": "price", "cache_hit": True},
                    {"query_type": "price"},
                    {"query_type": "fundamentals", "error": "timeout"},
                ],
                "messages": [("user", "hi"), ("assistant", "hello")],
                "tool_calls": [{"tool_name": "t", "tokens_in": 10, "tokens_out": 5, "cost": 0.01}],
            },
            {
                "created_at": at(D1, 15),
                "status": "abandoned",
                "duration_seconds": 300,
                "assets": ["AAPL"],
                "tags": ["earnings", "tech"],
                "queries": [{"query_type": "news"}],
            },
            {
                "created_at": at(D1, 23, 30),
                "session_type": "crypto",
                "status": "failed",
                "duration_seconds": 50,
                "assets": ["BTC"],
            },
            {
                "created_at": at(D2, 0, 10),
                "status": "expired",
                "duration_seconds": 1000,
                "assets": ["TSLA"],
                "queries": [{"query_type": "technical", "cache_hit": True}] * 2,
            },
            {"created_at": at(D0, 23, 59), "status": "completed", "assets": ["OUT"]},
        ],
        fold=False,  # these tests are about the recompute
    )


def metric(day, session_type="equity") -> DailyMetric:
    return DailyMetric.objects.get(day=day, session_type=session_type)


def test_rollup_matches_hand_computed_values(three_days):
    result = compute_daily_metrics(D1, D3)

    assert result["days"] == 3
    assert result["rows"] == 3 * len(SessionType.values)  # every (day, type), zeros included
    assert result["sessions"] == 4

    m = metric(D1)
    assert (m.sessions_started, m.sessions_completed, m.sessions_abandoned) == (2, 1, 1)
    assert (m.sessions_failed, m.sessions_expired) == (0, 0)
    assert (m.queries, m.cache_hits, m.errors, m.messages, m.tool_calls) == (4, 1, 1, 2, 1)
    assert m.total_duration_seconds == 400
    assert m.avg_duration_seconds == 200
    # As percentile_cont, from the histogram: within its relative error.
    assert m.p50_duration_seconds == pytest.approx(200, rel=RELATIVE_ERROR)  # 100 and 300
    assert m.p95_duration_seconds == pytest.approx(290, rel=RELATIVE_ERROR)  # 100 + .95 * 200
    assert m.avg_queries_per_session == 2
    assert (m.tokens_in, m.tokens_out, m.cost) == (10, 5, Decimal("0.01"))
    assert m.top_assets == {"AAPL": 2, "MSFT": 1}
    assert m.tag_counts == {"earnings": 2, "tech": 1}
    assert m.query_type_counts == {"price": 2, "fundamentals": 1, "news": 1}

    crypto = metric(D1, "crypto")
    assert (crypto.sessions_started, crypto.sessions_failed, crypto.queries) == (1, 1, 0)
    assert crypto.p50_duration_seconds == crypto.p95_duration_seconds
    assert crypto.p50_duration_seconds == pytest.approx(50, rel=RELATIVE_ERROR)
    assert crypto.top_assets == {"BTC": 1}
    assert crypto.query_type_counts == {}

    d2 = metric(D2)
    assert (d2.sessions_started, d2.sessions_expired, d2.queries, d2.cache_hits) == (1, 1, 2, 2)
    assert d2.query_type_counts == {"technical": 2}

    empty = metric(D3, "macro")
    assert (empty.sessions_started, empty.queries, empty.top_assets) == (0, 0, {})
    assert not DailyMetric.objects.filter(day=D0).exists()


def test_recompute_is_idempotent_and_replaces_rows(three_days):
    compute_daily_metrics(D1, D3)
    first = list(DailyMetric.objects.order_by("day", "session_type").values(*FIELDS))
    compute_daily_metrics(D1, D3)
    again = list(DailyMetric.objects.order_by("day", "session_type").values(*FIELDS))
    assert again == first

    Session.objects.filter(status="abandoned").delete()
    compute_daily_metrics(D1, D1)
    m = metric(D1)
    assert (m.sessions_started, m.sessions_abandoned, m.queries) == (1, 0, 3)
    assert m.tag_counts == {"earnings": 1}
    assert metric(D2).sessions_started == 1  # outside the recomputed range: untouched


def test_days_follow_the_configured_time_zone(settings):
    settings.TIME_ZONE = "America/New_York"
    # 02:00 UTC on D2 is 22:00 on D1 in New York.
    archived_sessions([{"created_at": at(D2, 2), "status": "completed"}], fold=False)
    compute_daily_metrics(D1, D2)
    assert metric(D1).sessions_started == 1
    assert metric(D2).sessions_started == 0


def test_top_lists_keep_the_most_frequent_items():
    specs = [
        {"created_at": at(D1, 10), "assets": [f"A{i:02d}", "COMMON"], "tags": [f"t{i}"]}
        for i in range(40)
    ]
    archived_sessions(specs, fold=False)
    compute_daily_metrics(D1, D1)
    m = metric(D1)
    assert m.top_assets["COMMON"] == 40
    assert len(m.top_assets) == 25  # COMMON plus the first 24 singletons in name order
    assert len(m.tag_counts) == 25


def test_bad_range_is_rejected_and_changes_nothing(three_days):
    compute_daily_metrics(D1, D1)
    with pytest.raises(ValueError, match="before start_day"):
        compute_daily_metrics(D2, D1)
    assert DailyMetric.objects.filter(day=D1).count() == len(SessionType.values)


FIELDS = (
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
    "p50_duration_seconds",
    "p95_duration_seconds",
    "top_assets",
    "query_type_counts",
    "tag_counts",
)
