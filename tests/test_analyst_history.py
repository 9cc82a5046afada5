"""History additions: cost and token columns with keyset-paged sorts, copyable full ids,
absolute start times."""

import pytest
from django.urls import reverse

from sessions_app import history
from tests.factories import archived_sessions

pytestmark = pytest.mark.django_db


@pytest.fixture
def priced():
    return archived_sessions(
        {
            "purpose": f"s{i}",
            "tool_calls": [{"tokens_in": 10 * (i % 4), "tokens_out": i, "cost": 0.001 * (i % 5)}],
        }
        for i in range(12)
    )


def _walk(sort: str) -> list:
    """Every row, page by page (3 a page), through the keyset cursors."""
    rows, cursor = [], None
    while True:
        page = history.search_sessions(history.HistoryFilters(), sort, cursor, 3)
        rows += page.rows
        if not page.next_cursor:
            return rows
        cursor = page.next_cursor


@pytest.mark.parametrize("sort", ["-cost", "cost", "-tokens", "tokens"])
def test_cost_and_token_sorts_page_through_every_row_once(priced, sort):
    rows = _walk(sort)
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    key = "cost" if "cost" in sort else "total_tokens"
    values = [r[key] for r in rows]
    assert values == sorted(values, reverse=sort.startswith("-"))


def test_history_table_shows_tokens_cost_full_ids_and_absolute_times(analyst_client, priced):
    response = analyst_client.get(reverse("dashboard:history"), {"sort": "-tokens"})
    assert response.status_code == 200
    body = response.content.decode()
    top = response.context["page"].rows[0]
    assert top["total_tokens"] == 41  # i = 11: 10 * 3 + 11
    assert f'data-copy="{top["id"]}"' in body and f'title="{top["id"]}"' in body
    assert 'data-sort="cost"' in body and 'data-sort="tokens"' in body
    assert 'class="abs-time"' in body


def test_a_cursor_from_another_sort_or_forged_is_refused(analyst_client, priced):
    page = history.search_sessions(history.HistoryFilters(), "-cost", None, 3)
    response = analyst_client.get(
        reverse("dashboard:history"), {"sort": "-tokens", "cursor": page.next_cursor}
    )
    assert response.status_code == 400
    forged = history.encode_cursor("-cost", "n", "NaN", priced[0].id)
    response = analyst_client.get(reverse("dashboard:history"), {"sort": "-cost", "cursor": forged})
    assert response.status_code == 400 and "out of date" in response.content.decode()
