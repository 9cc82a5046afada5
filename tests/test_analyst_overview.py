"""Overview: every KPI compared with the previous period of equal length, the previous period
overlaid on the charts, units and drill-down targets on every chart."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions_app import explore
from sessions_app.analytics import Period
from sessions_app.metrics import compute_daily_metrics
from tests.factories import archived_sessions

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_weeks():
    """This week: 6 sessions (4 completed); the week before: 3 (1 completed), more errors."""
    now = timezone.now()

    def spec(days_ago, status, errors=0, cost=0.01):
        return {
            "created_at": now - timedelta(days=days_ago, hours=1),
            "status": status,
            "session_type": "equity" if days_ago % 2 else "crypto",
            "assets": ["NVDA"],
            "tags": ["earnings"],
            "queries": [{"error": "x" if i < errors else ""} for i in range(2)],
            "tool_calls": [{"tokens_in": 100, "tokens_out": 50, "cost": cost}],
        }

    sessions = archived_sessions(
        [spec(d, "completed") for d in (1, 2, 3, 4)]
        + [spec(5, "failed", errors=1), spec(6, "abandoned")]
        + [spec(8, "completed", errors=2), spec(9, "failed", errors=2), spec(10, "abandoned")]
    )
    today = timezone.localdate()
    compute_daily_metrics(today - timedelta(days=15), today - timedelta(days=1))
    return sessions


def test_previous_period_has_equal_length():
    period = Period(timezone.localdate() - timedelta(days=6), timezone.localdate())
    before = explore.previous_period(period)
    assert before.days == 7 and before.end == period.start - timedelta(days=1)


def test_every_kpi_shows_its_change(analyst_client, two_weeks):
    response = analyst_client.get(reverse("dashboard:overview"), {"range": "7"})
    assert response.status_code == 200
    changes = response.context["changes"]
    assert set(changes) == set(explore.KPI_CHANGES)
    assert changes["sessions"]["now"] == 6 and changes["sessions"]["before"] == 3
    assert changes["sessions"]["pct"] == pytest.approx(100.0)
    # Completion 4/6 against 1/3: +33.3 percentage points, and a rise is good.
    assert changes["completion"]["diff"] == pytest.approx(4 / 6 - 1 / 3, abs=1e-3)
    assert changes["completion"]["better"] is True
    assert changes["error_rate"]["better"] is True  # fewer errors per operation
    body = response.content.decode()
    for kpi in explore.KPI_CHANGES:
        assert f'data-kpi="{kpi}"' in body
    assert '<span class="delta delta-flat" data-delta="100.00">▲ 100.0 %</span>' in body
    assert "33.3 pp" in body
    assert "previous 7 days" in body


def test_no_previous_data_says_so(analyst_client, two_weeks):
    response = analyst_client.get(
        reverse("dashboard:overview"),
        {"range": "custom", "start": "2001-01-01", "end": "2001-01-07"},
    )
    assert response.status_code == 200
    assert all(change is None for change in response.context["changes"].values())


def _chart(response, name):
    return response.context["charts"][name]


def test_charts_overlay_the_previous_period_on_request(analyst_client, two_weeks):
    plain = analyst_client.get(reverse("dashboard:overview"), {"range": "7"})
    assert not any(d.get("previous") for d in _chart(plain, "sessions")["data"]["datasets"])
    response = analyst_client.get(reverse("dashboard:overview"), {"range": "7", "compare": "on"})
    sessions = _chart(response, "sessions")
    previous = [d for d in sessions["data"]["datasets"] if d.get("previous")]
    assert len(previous) == 1 and sum(previous[0]["data"]) == 3
    assert previous[0]["stack"] == "previous"  # not piled on the current bars
    assert len(sessions["meta"]["previous_labels"]) == 7
    assert (
        sessions["meta"]["previous_labels"][-1]
        == (timezone.localdate() - timedelta(days=7)).isoformat()
    )


def test_every_chart_has_units_and_a_drill_down(analyst_client, two_weeks):
    response = analyst_client.get(reverse("dashboard:overview"), {"range": "7"})
    charts = response.context["charts"]
    for name, config in charts.items():
        assert config["meta"]["unit"], name
        assert config["meta"]["drill"], name
    assert charts["sessions"]["meta"]["total"] is True
    assert charts["sessions"]["meta"]["drill"]["series_types"] == ["equity", "crypto"]
    period = response.context["stats"]["period"]
    link = charts["assets"]["meta"]["drill"]["links"][0]
    assert link == f"/history/?asset=NVDA&start={period['start']}&end={period['end']}"
    assert charts["tags"]["meta"]["drill"]["links"][0].startswith("/history/?tag=earnings&")
    status_links = charts["status"]["meta"]["drill"]["links"]
    assert any("status=failed" in link for link in status_links)
    # The config reaches the page as JSON for charts.js.
    body = response.content.decode()
    config = json.loads(
        body.split('id="chart-assets-config" type="application/json">')[1].split("<")[0]
    )
    assert config["meta"]["drill"]["links"][0] == link


def test_overview_with_comparison_query_count(
    analyst_client, two_weeks, django_assert_max_num_queries
):
    analyst_client.get(reverse("dashboard:overview"), {"range": "7"})
    # Login (4), per period the rollup cutoffs and the one overview statement, saved views (1).
    with django_assert_max_num_queries(9):
        analyst_client.get(reverse("dashboard:overview"), {"range": "30", "compare": "on"})
