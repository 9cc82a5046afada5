"""The session trace: absolute times and offsets, tool calls grouped with their results and
turns, the waterfall, error links, and pages loaded as the list scrolls."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions_app import trace
from tests.factories import archived_session

pytestmark = pytest.mark.django_db


def _detail(client, session_id, htmx=False, **params):
    headers = {"HX-Request": "true"} if htmx else {}
    return client.get(reverse("dashboard:session", args=[session_id]), params, headers=headers)


@pytest.fixture
def agent_session(store):
    """A live agent session: a turn with one tool call, its result, a failed query, the answer."""
    s = store.create_session(assets=["AAPL"], session_type="agent", user_id="user-7")
    store.add_message(s.id, role="user", content="How did AAPL do?")
    store.record_tool_call(
        s.id,
        tool_name="market_data",
        invocation_id="call_abc",
        duration_ms=1200.0,
        tokens_in=300,
        tokens_out=120,
        cost=0.0042,
    )
    store.add_message(
        s.id, role="tool", content="AAPL +2%", tool_name="market_data", invocation_id="call_abc"
    )
    from sessions_app.store import QueryRecord

    store.add_query(s.id, QueryRecord(query_type="news", error="upstream timeout"))
    store.add_message(s.id, role="assistant", content="It rose 2%.")
    return s


def test_trace_groups_a_tool_call_with_its_result_and_turn(analyst_client, agent_session):
    response = _detail(analyst_client, agent_session.id)
    assert response.status_code == 200
    html = response.content.decode()
    group = re.search(r'<li class="step-group" data-invocation="call_abc">(.*?)</ol>', html, re.S)
    assert group, "the tool call and its result are one group"
    assert 'id="event-1"' in group[1] and 'id="event-2"' in group[1]
    assert 'id="event-3"' not in group[1]
    # Every event after the user's message belongs to its turn.
    for seq in (1, 2, 3, 4):
        assert re.search(rf'id="event-{seq}"[^>]*data-turn="0"', html)
    assert 'class="event event-message turn-start"' in html
    # Tokens and cost of the tool call's step; the waterfall bar of every event.
    assert "300 → 120 tok · $0.0042" in html
    assert html.count('class="wf-bar"') == 5


def test_trace_shows_absolute_times_and_offsets(analyst_client, agent_session):
    html = _detail(analyst_client, agent_session.id).content.decode()
    assert re.search(r'<time datetime="[^"]+" title="[^"]+">\d\d:\d\d:\d\d\.\d{3}</time>', html)
    assert re.search(r'title="Offset from the session start">\+0:0\d\.\d{3}<', html)


def test_error_counter_links_to_the_first_error(analyst_client, agent_session):
    html = _detail(analyst_client, agent_session.id).content.decode()
    assert 'data-errors="3"' in html
    assert 'id="error-count" href="?upto=3#event-3"' in html
    assert "Jump to next error" in html


def _long_session(n: int, error_every: int = 0):
    start = timezone.now() - timedelta(hours=3)
    return archived_session(
        created_at=start,
        duration_seconds=n + 5,
        queries=[
            {
                "query_type": "price",
                "error": "boom" if error_every and i % error_every == error_every - 1 else "",
            }
            for i in range(n)
        ],
    )


def test_trace_loads_in_pages_as_it_scrolls(analyst_client):
    session = _long_session(250)
    html = _detail(analyst_client, session.id).content.decode()
    assert html.count('class="wf-bar"') == trace.TRACE_PAGE
    assert 'id="event-99"' in html and 'id="event-100"' not in html
    assert 'hx-trigger="revealed"' in html and "?offset=100" in html

    page2 = _detail(analyst_client, session.id, offset=100, htmx=True)
    body = page2.content.decode()
    assert "<html" not in body  # just the items
    assert 'id="event-100"' in body and 'id="event-199"' in body and 'id="event-99"' not in body
    assert "?offset=200" in body

    last = _detail(analyst_client, session.id, offset=200, htmx=True)
    body = last.content.decode()
    assert 'id="event-249"' in body and 'id="trace-more"' not in body


def test_upto_extends_the_page_to_an_error_far_down(analyst_client):
    session = _long_session(400, error_every=300)  # the only error is #299
    html = _detail(analyst_client, session.id).content.decode()
    assert 'href="?upto=299#event-299"' in html
    assert 'id="event-299"' not in html
    html = _detail(analyst_client, session.id, upto=299).content.decode()
    assert 'id="event-299"' in html
    more = _detail(analyst_client, session.id, offset=100, upto=299, htmx=True)
    assert 'id="event-299"' in more.content.decode()


@pytest.mark.parametrize("n", [60, 1000])
def test_trace_query_count_does_not_grow_per_event(analyst_client, django_assert_num_queries, n):
    """Login (4), the session (2: its row and its last LOADED_QUERIES queries, which the store
    loads with every session so history.get_recent_queries needs no second call), and one
    timeline read (2) per 500 events: never one per event."""
    session = _long_session(n)
    analyst_client.get(reverse("dashboard:overview"))  # warm the session/permission caches
    reads = -(-n // trace.STORE_PAGE)
    with django_assert_num_queries(6 + 2 * reads):
        _detail(analyst_client, session.id)


def test_offsets_and_axis_labels():
    assert trace.offset_text(65.3) == "+1:05.300"
    assert trace.offset_text(3725.0) == "+1:02:05.000"
    assert trace.axis_label(200) == "3m 20s"
    assert trace.axis_label(0.25) == "0.25s" and trace.axis_label(2.5) == "2.5s"
    assert trace.axis_label(0) == "0s"
