"""The users list (sort, search, pages, period) and the "no such user" page."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions_app import explore, tasks, user_summaries
from sessions_app.models import UserPeriodSnapshot
from tests.factories import archived_session, archived_sessions

pytestmark = pytest.mark.django_db

HTMX = {"headers": {"HX-Request": "true"}}


@pytest.fixture
def people():
    """Four users: alice (3 sessions, cheap), Alfred (1, costly), bob (2, errors), carol (old)."""
    now = timezone.now()

    def spec(user, hours_ago, cost=0.0, errors=0, queries=1, days_ago=0):
        return {
            "user_id": user,
            "created_at": now - timedelta(days=days_ago, hours=hours_ago),
            "queries": [{"error": "x" if i < errors else ""} for i in range(queries)],
            "tool_calls": [{"tokens_in": 100, "tokens_out": 50, "cost": cost}],
        }

    return archived_sessions(
        [
            spec("alice", 5, cost=0.01),
            spec("alice", 6, cost=0.01),
            spec("alice", 7, cost=0.01, queries=4),
            spec("Alfred", 1, cost=2.5),
            spec("bob", 3, errors=2, queries=3),
            spec("bob", 30, errors=1, queries=2),
            spec("carol", 1, days_ago=40),
        ]
    )


def _ids(response):
    return [row.user_id for row in response.context["users"].rows]


def test_users_list_totals_and_default_order(analyst_client, people):
    response = analyst_client.get(reverse("dashboard:users"))
    assert response.status_code == 200
    users = {row.user_id: row for row in response.context["users"].rows}
    assert set(users) == {"alice", "Alfred", "bob"}  # carol is outside 30 days
    assert users["alice"].sessions == 3 and users["alice"].queries == 6
    assert users["bob"].errors == 3
    assert users["Alfred"].tokens == 150 and users["Alfred"].cost == Decimal("2.5")
    assert _ids(response)[0] == "Alfred"  # most recently active first
    assert "carol" in _ids(analyst_client.get(reverse("dashboard:users"), {"days": 90}))


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("-sessions", ["alice", "bob", "Alfred"]),
        ("-cost", ["Alfred", "alice", "bob"]),
        ("-errors", ["bob", "Alfred", "alice"]),
        ("user", ["Alfred", "alice", "bob"]),  # byte order: capitals first
        ("queries", ["Alfred", "bob", "alice"]),
    ],
)
def test_users_list_sorts_by_every_column(analyst_client, people, sort, expected):
    response = analyst_client.get(reverse("dashboard:users"), {"sort": sort})
    assert _ids(response) == expected


def test_users_search_is_a_case_insensitive_prefix_and_htmx_gets_the_partial(
    analyst_client, people
):
    response = analyst_client.get(reverse("dashboard:users"), {"q": "AL"}, **HTMX)
    assert sorted(_ids(response)) == ["Alfred", "alice"]
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="users-list"') and "<html" not in body


def test_users_search_without_match_suggests_close_ids(analyst_client, people):
    response = analyst_client.get(reverse("dashboard:users"), {"q": "alx"})
    assert _ids(response) == []
    assert response.context["suggestions"] == ["Alfred", "alice"]
    assert "Did you mean" in response.content.decode()


def test_users_list_pages(analyst_client, people):
    page1 = explore.list_users(sort="user", per_page=2)
    page2 = explore.list_users(sort="user", page=2, per_page=2)
    assert [r.user_id for r in page1.rows] == ["Alfred", "alice"]
    assert [r.user_id for r in page2.rows] == ["bob"]
    assert page1.total == 3 and page1.pages == 2
    response = analyst_client.get(reverse("dashboard:users"), {"page": 99})
    assert response.status_code == 200 and response.context["users"].page == 1


def test_users_list_rejects_bad_input_by_name(analyst_client, people):
    response = analyst_client.get(reverse("dashboard:users"), {"sort": "drop table", "days": 5})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Sort: Select a valid choice" in body and "Period: Select a valid choice" in body


def test_users_list_query_count_is_fixed(analyst_client, people, django_assert_num_queries):
    analyst_client.get(reverse("dashboard:users"), **HTMX)
    # Session, user, 2 permission reads, the summary's freshness and count, the page.
    with django_assert_num_queries(6):
        analyst_client.get(reverse("dashboard:users"), {"sort": "-cost"}, **HTMX)


def test_the_list_reads_its_summary_until_the_metrics_job_rebuilds_it(
    analyst_client, people, django_assert_num_queries
):
    first = explore.list_users()  # no summary yet: this request builds it
    assert first.as_of is not None and first.total == 3
    with django_assert_num_queries(2):  # freshness and count, then the page: no aggregate
        page = explore.list_users(sort="-cost", search="AL", page=1)
    assert [r.user_id for r in page.rows] == ["Alfred", "alice"]
    archived_session(user_id="newbie", archived_at=timezone.now())
    # Stale until the job runs (every 15 minutes), and the page says as of when.
    assert explore.list_users(search="new").rows == []
    response = analyst_client.get(reverse("dashboard:users"))
    assert f"as of {timezone.localtime(first.as_of):%H:%M}" in response.content.decode()
    result = tasks.recompute_recent_metrics()
    assert result["user_summaries"] == {7: 4, 30: 4, 90: 5}
    fresh = explore.list_users(search="new")
    assert [r.user_id for r in fresh.rows] == ["newbie"] and fresh.as_of > first.as_of


def test_a_summary_built_on_another_day_is_rebuilt_on_read(people):
    explore.list_users()
    archived_session(user_id="newbie", archived_at=timezone.now())
    yesterday = timezone.localdate() - timedelta(days=1)
    UserPeriodSnapshot.objects.filter(days=30).update(period_end=yesterday)
    assert [r.user_id for r in explore.list_users(search="new").rows] == ["newbie"]
    assert UserPeriodSnapshot.objects.get(days=30).period_end == timezone.localdate()
    # A request that waited on another's rebuild of the same period does not rebuild again.
    assert user_summaries.refresh_period(30, missing_only=True) is None
    assert user_summaries.refresh_period(30) == 4


def test_users_list_pages_keep_ties_in_id_order_both_ways(people):
    # alice and Alfred tie on errors (0): id order under either direction, across pages.
    for sort, expected in (("errors", ["Alfred", "alice", "bob"]),
                           ("-errors", ["bob", "Alfred", "alice"]),
                           ("-user", ["bob", "alice", "Alfred"]),
                           ("last_active", ["alice", "bob", "Alfred"])):  # fmt: skip
        pages = [explore.list_users(sort=sort, page=n, per_page=1) for n in (1, 2, 3)]
        assert [p.rows[0].user_id for p in pages] == expected, sort
        assert {(p.total, p.pages) for p in pages} == {(3, 3)}


def test_unknown_user_gets_no_such_user_with_suggestions(analyst_client, people):
    response = analyst_client.get(reverse("dashboard:user", args=["alicia"]))
    assert response.status_code == 404
    body = response.content.decode()
    assert "No such user" in body and "alicia" in body
    assert response.context["suggestions"] == ["alice"]
    assert reverse("dashboard:user", args=["alice"]) in body


def test_known_user_page_still_works(analyst_client, people):
    response = analyst_client.get(reverse("dashboard:user", args=["bob"]))
    assert response.status_code == 200
    assert len(response.context["page"].rows) == 2


def test_history_user_and_tag_filters_ignore_case(analyst_client, people):
    from sessions_app.metrics import compute_daily_metrics
    from tests.factories import archived_session

    archived_session(user_id="david", tags=["Earnings"])
    archived_session(user_id="David", tags=["earnings", "risk"])
    today = timezone.localdate()
    compute_daily_metrics(today - timedelta(days=1), today)
    response = analyst_client.get(reverse("dashboard:history"), {"user": "DAVID"})
    assert {r["user_id"] for r in response.context["page"].rows} == {"david", "David"}
    response = analyst_client.get(reverse("dashboard:history"), {"tag": "EARNINGS"})
    assert len(response.context["page"].rows) == 2


def test_autocomplete_from_indexed_values(analyst_client, people):
    from sessions_app.metrics import compute_daily_metrics
    from tests.factories import archived_session

    archived_session(user_id="zed", tags=["Earnings"], assets=["NVDA"])
    today = timezone.localdate()
    compute_daily_metrics(today - timedelta(days=2), today)
    url = reverse("dashboard:suggest", args=["user"])
    body = analyst_client.get(url, {"q": "a"}).content.decode()
    assert '<option value="Alfred">' in body and '<option value="alice">' in body
    assert "bob" not in body
    body = analyst_client.get(reverse("dashboard:suggest", args=["tag"]), {"q": "ear"})
    assert '<option value="Earnings">' in body.content.decode()
    body = analyst_client.get(reverse("dashboard:suggest", args=["asset"]), {"q": "nv"})
    assert '<option value="NVDA">' in body.content.decode()
    assert (
        analyst_client.get(reverse("dashboard:suggest", args=["user"]), {"q": ""}).status_code
        == 200
    )


def test_autocomplete_refuses_unknown_lists_and_odd_input(analyst_client, people):
    assert analyst_client.get(reverse("dashboard:suggest", args=["purpose"])).status_code == 404
    odd = analyst_client.get(reverse("dashboard:suggest", args=["user"]), {"q": "a\x00l%_"})
    assert odd.status_code == 200 and odd.content.decode().strip() == ""
    tags = analyst_client.get(reverse("dashboard:suggest", args=["tag"]), {"q": "%"})
    assert tags.status_code == 200 and tags.content.decode().strip() == ""  # % is literal
    # The filter input's own parameter works too (HTMX sends the field itself).
    body = analyst_client.get(reverse("dashboard:suggest", args=["user"]), {"user": "b"})
    assert '<option value="bob">' in body.content.decode()
