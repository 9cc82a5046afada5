"""Archived timeline reads (archive/timeline.py) give exactly what the ORM rows held."""

from datetime import timedelta

import pytest

from sessions_app.archive import timeline
from sessions_app.domain import TimelineEvent
from sessions_app.models import SessionEvent
from tests.factories import archived_session

pytestmark = pytest.mark.django_db


def old_shape(session_id) -> list[TimelineEvent]:
    """The events as the store built them from ORM rows before (one object per row)."""
    return [
        TimelineEvent(
            seq=row.seq,
            kind=row.kind,
            occurred_at=row.occurred_at,
            query_type=row.query_type,
            parameters=row.parameters,
            result_summary=row.result_summary,
            execution_ms=row.execution_ms,
            cache_hit=row.cache_hit,
            error=row.error,
            role=row.role,
            content=row.content,
            tool_name=row.tool_name,
            invocation_id=row.invocation_id,
            duration_ms=row.duration_ms,
            tokens_in=row.tokens_in,
            tokens_out=row.tokens_out,
            cost=float(row.cost),
        )
        for row in SessionEvent.objects.filter(session_id=session_id).order_by("seq")
    ]


@pytest.fixture
def session():
    return archived_session(
        queries=[
            {"query_type": "price", "parameters": {"symbol": "AAPL", "n": [1, 2.5, None]}},
            {"query_type": "news", "error": "timeout\ttab", "cache_hit": True, "execution_ms": 0},
        ],
        messages=[("user", "Compare <b>AAPL</b> «quotes»\nand é"), ("assistant", "")],
        tool_calls=[
            {"tool_name": "t", "invocation_id": "c1", "tokens_in": 7, "cost": 0.123456},
            {"tool_name": "u", "duration_ms": None, "cost": 999999.999999},
        ],
    )


def test_reads_match_the_old_row_shape(session):
    # Microseconds survive the trip (epoch seconds as a float would round some of them).
    SessionEvent.objects.filter(session_id=session.id, seq=1).update(
        occurred_at=session.created_at + timedelta(microseconds=999_999)
    )
    expected = old_shape(session.id)
    assert len(expected) == 6
    assert timeline.read_all(session.id) == expected
    assert timeline.read_page(session.id, 2, 3) == expected[2:5]
    assert timeline.read_page(session.id, 6, 10) == []
    assert timeline.read_last(session.id, 2) == expected[-2:]
    assert timeline.read_last(session.id, 0) == []


def test_unknown_session_reads_empty():
    assert timeline.read_all("no-such-session") == []
