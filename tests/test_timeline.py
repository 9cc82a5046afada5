"""Archived timelines (TimelineChunk arrays read by archive/timeline.py) give exactly what the
old one-row-per-event shape gave, and the migration converts the old rows."""

import importlib
import json
from datetime import timedelta

import pytest
from django.db import connection

from sessions_app.archive import timeline
from sessions_app.domain import TimelineEvent
from sessions_app.models import Session, SessionEvent, TimelineChunk
from tests.factories import archived_session, build_archived_session

pytestmark = pytest.mark.django_db

# The archiver's per-event insert before timelines were chunked: the old shape to compare with.
OLD_INSERT = """
INSERT INTO sessions_app_sessionevent (
    session_id, seq, kind, occurred_at, query_type, parameters, result_summary, execution_ms,
    cache_hit, error, role, content, tool_name, invocation_id, duration_ms, tokens_in,
    tokens_out, cost)
SELECT %(id)s, e.seq, e.kind, to_timestamp(e.occurred_at),
    COALESCE(e.query_type, ''), COALESCE(e.parameters, '{}'::jsonb),
    COALESCE(e.result_summary, ''), e.execution_ms, COALESCE(e.cache_hit, false),
    COALESCE(e.error, ''), COALESCE(e.role, ''), COALESCE(e.content, ''),
    COALESCE(e.tool_name, ''), COALESCE(e.invocation_id, ''), e.duration_ms,
    COALESCE(e.tokens_in, 0), COALESCE(e.tokens_out, 0), COALESCE(e.cost, 0)
FROM unnest(%(bodies)s::text[]) AS b(body), json_to_record(b.body::json) AS e(
    seq int, kind text, occurred_at float8, query_type text, parameters jsonb,
    result_summary text, execution_ms float8, cache_hit boolean, error text, role text,
    content text, tool_name text, invocation_id text, duration_ms float8, tokens_in int,
    tokens_out int, cost numeric)
"""


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


def redis_events(n: int, start: float = 1_764_000_000.0) -> list[str]:
    """Event JSON texts as the live store keeps them: `{"seq":N,` then the event's fields."""
    bodies = []
    for seq in range(n):
        # Timestamps at the edges of microsecond rounding (the store rounds to 6 places; older
        # or foreign data may carry more).
        when = start + seq * 1.0000005 + (0.0000005 if seq % 3 == 0 else 0.123456)
        if seq % 3 == 0:
            event = {
                "kind": "query",
                "query_type": f"type{seq % 4}" if seq % 5 else "",
                "parameters": {"symbol": "AAPL", "n": [1, 2.5, None], "z": {"é": "«x»"}},
                "result_summary": "ok\ttab\nline \\ backslash",
                "execution_ms": 12.5 if seq % 2 else 0,
                "cache_hit": bool(seq % 2),
                "error": "timeout" if seq % 7 == 0 else "",
            }
        elif seq % 3 == 1:
            event = {"kind": "message", "role": "user", "content": "Compare <b>AAPL</b>\n"}
            if seq % 2:
                event |= {"tool_name": "quote", "invocation_id": f"c{seq}"}
        else:
            event = {
                "kind": "tool_call",
                "tool_name": "quote",
                "invocation_id": f"c{seq}",
                "duration_ms": None if seq % 4 == 0 else 3.25,
                "tokens_in": seq,
                "tokens_out": 7,
                "cost": [0.123456, 999999.999999, 0.000001, 0][seq % 4],
                "error": "",
            }
        event |= {"event_id": f"e{seq}", "occurred_at": when}
        bodies.append(f'{{"seq":{seq},' + json.dumps(event, separators=(",", ":"))[1:])
    return bodies


def store_both_shapes(bodies: list[str]) -> str:
    """Save one session's events in the old per-event shape and as chunks; its id."""
    session, _ = build_archived_session()
    session.save()
    with connection.cursor() as cursor:
        cursor.execute(OLD_INSERT, {"id": session.id, "bodies": bodies})
        timeline.write(cursor, {session.id: bodies})
    return session.id


def test_chunks_read_exactly_what_the_old_rows_held():
    session_id = store_both_shapes(redis_events(30))
    expected = old_shape(session_id)
    assert len(expected) == 30
    assert timeline.read_all(session_id) == expected
    assert timeline.read_page(session_id, 2, 3) == expected[2:5]
    assert timeline.read_page(session_id, 30, 10) == []
    assert timeline.read_last(session_id, 4) == expected[-4:]
    assert timeline.read_last(session_id, 0) == []
    queries = [event for event in expected if event.kind == "query"]
    assert timeline.read_last_queries(session_id, 3) == queries[-3:]
    assert timeline.count(session_id) == 30


def test_pages_across_chunks():
    n = 2 * timeline.CHUNK + 3
    session_id = store_both_shapes(redis_events(n))
    assert TimelineChunk.objects.filter(session_id=session_id).count() == 3
    expected = old_shape(session_id)
    assert timeline.read_all(session_id) == expected
    assert [e.seq for e in timeline.read_all(session_id)] == list(range(n))
    edge = timeline.CHUNK
    assert timeline.read_page(session_id, edge - 2, 5) == expected[edge - 2 : edge + 3]
    assert timeline.read_page(session_id, edge, edge) == expected[edge : 2 * edge]
    assert timeline.read_page(session_id, 1, n + 10) == expected[1:]
    assert timeline.read_last(session_id, 4) == expected[-4:]
    assert timeline.read_last(session_id, edge + 5) == expected[-(edge + 5) :]
    assert timeline.read_last(session_id, 10 * n) == expected
    queries = [event for event in expected if event.kind == "query"]
    assert timeline.read_last_queries(session_id, edge) == queries[-edge:]


def test_migration_converts_old_rows_and_empties_the_table():
    # Old rows as the ORM wrote them, microseconds included.
    session, events = build_archived_session(
        queries=[
            {"query_type": "price", "parameters": {"symbol": "AAPL", "n": [1, 2.5, None]}},
            {"query_type": "", "error": "timeout\ttab", "cache_hit": True, "execution_ms": 0},
        ],
        messages=[("user", "Compare <b>AAPL</b> «quotes»\nand é"), ("assistant", "")],
        tool_calls=[
            {"tool_name": "t", "invocation_id": "c1", "tokens_in": 7, "cost": 0.123456},
            {"tool_name": "u", "duration_ms": None, "cost": 999999.999999},
        ],
    )
    events[1].occurred_at += timedelta(microseconds=999_999)
    session.save()
    SessionEvent.objects.bulk_create(events)
    other, other_events = build_archived_session(queries=[{}] * 3)
    other.save()
    SessionEvent.objects.bulk_create(other_events)
    expected = {sid: old_shape(sid) for sid in (session.id, other.id)}
    assert len(expected[session.id]) == 6

    migration = importlib.import_module(
        "sessions_app.migrations.0014_convert_events_to_timeline_chunks"
    )
    migration.convert(None, connection.schema_editor())

    assert not SessionEvent.objects.exists()
    for session_id, events_before in expected.items():
        assert timeline.read_all(session_id) == events_before
    # And back: the reverse migration restores the same rows.
    migration.restore(None, connection.schema_editor())
    assert not TimelineChunk.objects.exists()
    assert {sid: old_shape(sid) for sid in expected} == expected


def test_factory_sessions_read_back_their_events():
    session = archived_session(queries=[{"query_type": "news"}], messages=[("user", "hi")])
    events = timeline.read_all(session.id)
    assert [(e.seq, e.kind, e.query_type, e.content) for e in events] == [
        (0, "query", "news", ""),
        (1, "message", "", "hi"),
    ]
    assert events[0].occurred_at == session.created_at + timedelta(seconds=1)


def test_unknown_session_reads_empty():
    assert timeline.read_all("no-such-session") == []
    assert timeline.read_last("no-such-session", 5) == []
    assert timeline.read_last_queries("no-such-session", 5) == []


def test_archiver_writes_the_live_timeline_in_chunks(store):
    from dataclasses import replace

    from sessions_app.archive import archive_session
    from sessions_app.store import QueryRecord

    session = store.create_session(assets=["AAPL"], session_type="agent", user_id="u-chunks")
    n = timeline.CHUNK + 7
    for i in range(n):
        if i % 3:
            store.add_message(session.id, role="user", content=f"m{i} «é»\ttab")
        else:
            store.add_query(session.id, QueryRecord(query_type=f"t{i % 2}", parameters={"i": i}))
    live, total = store.get_timeline(session.id, offset=0, limit=timeline.CHUNK)
    live += store.get_timeline(session.id, offset=timeline.CHUNK, limit=timeline.CHUNK)[0]
    assert total == n and len(live) == n
    assert archive_session(session.id)
    assert TimelineChunk.objects.filter(session_id=session.id).count() == 2
    # Archived events carry no event id; everything else is what the live store held.
    assert timeline.read_all(session.id) == [replace(event, event_id="") for event in live]
    archived, total = store.get_timeline(session.id, offset=timeline.CHUNK - 3, limit=6)
    edge = timeline.CHUNK
    assert total == n and [e.seq for e in archived] == list(range(edge - 3, edge + 3))
    queries = sum(1 for event in live if event.kind == "query")
    row = Session.objects.get(pk=session.id)
    assert row.query_type_counts == {"t0": (queries + 1) // 2, "t1": queries // 2}


def test_every_page_and_tail_matches_the_old_rows():
    # Pages cut at and around both chunk edges, from each side: the Python slicing of whole
    # chunk texts gives exactly the old rows.
    n = 2 * timeline.CHUNK + 3
    session_id = store_both_shapes(redis_events(n))
    expected = old_shape(session_id)
    edge = timeline.CHUNK
    points = sorted({0, 1, edge - 1, edge, edge + 1, 2 * edge - 1, 2 * edge, n - 1, n, n + 1})
    for offset in points:
        for limit in (1, 2, edge - 1, edge, edge + 1, n):
            page = timeline.read_page(session_id, offset, limit)
            assert page == expected[offset : offset + limit], (offset, limit)
    for n_last in (1, edge - 1, edge, edge + 1, 2 * edge + 2, n, n + 1):
        assert timeline.read_last(session_id, n_last) == expected[-n_last:], n_last
    queries = [event for event in expected if event.kind == "query"]
    for n_queries in (1, 5, len(queries) - 1, len(queries), len(queries) + 3):
        assert timeline.read_last_queries(session_id, n_queries) == queries[-n_queries:]
    assert timeline.read_page(session_id, 0, 0) == []
    assert timeline.read_page(session_id, -1, 5) == []


def test_migration_0020_converts_jsonb_chunks_to_text_with_the_same_events():
    migration = importlib.import_module("sessions_app.migrations.0020_timeline_events_text")
    session_id = store_both_shapes(redis_events(timeline.CHUNK + 9))
    short_id = store_both_shapes(redis_events(4))
    expected = {sid: old_shape(sid) for sid in (session_id, short_id)}
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred FK checks pending
        # Back to the old shape: jsonb arrays, as the archiver wrote them before 0020.
        cursor.execute(migration.TO_JSONB)
        cursor.execute(
            "SELECT atttypid::regtype::text FROM pg_attribute "
            "WHERE attrelid = 'sessions_app_timelinechunk'::regclass AND attname = 'events'"
        )
        assert cursor.fetchone()[0] == "jsonb"
        # The old reader: jsonb printed as text (its own spacing and key order), decoded.
        for sid, events in expected.items():
            cursor.execute(
                "SELECT events::text FROM sessions_app_timelinechunk "
                "WHERE session_id = %s ORDER BY chunk",
                [sid],
            )
            old_texts = [row[0] for row in cursor.fetchall()]
            assert ", " in old_texts[0]  # really jsonb's output, not the stored text
            decoded = [value for text in old_texts for value in json.loads(text)]
            assert timeline._events(decoded) == events
        cursor.execute(migration.TO_TEXT_LZ4)
        cursor.execute(
            "SELECT atttypid::regtype::text, attcompression FROM pg_attribute "
            "WHERE attrelid = 'sessions_app_timelinechunk'::regclass AND attname = 'events'"
        )
        kind, compression = cursor.fetchone()
        assert kind == "text"
        # lz4 where the server was built with it (the machine's Postgres), else pglz (pgserver).
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        assert compression == ("l" if cursor.fetchone()[0] else "")
    for sid, events in expected.items():
        assert timeline.read_all(sid) == events
        assert timeline.read_page(sid, timeline.CHUNK - 2, 4) == events[timeline.CHUNK - 2 :][:4]
        assert timeline.read_last(sid, 3) == events[-3:]
        assert timeline.count(sid) == len(events)


def test_objects_with_a_seq_key_nested_in_events_do_not_fool_partial_reads():
    # Partial reads split a chunk's text at `,{"seq":` without parsing it; objects in an event
    # that look like the next events (even the one after the last) must not shift or add any.
    n = timeline.CHUNK + 20
    bodies = redis_events(n)
    for seq in (3, timeline.CHUNK - 1, timeline.CHUNK + 5, n - 1):
        fakes = [{"seq": seq + 1, "kind": "query"}, {"seq": seq + 2}, {"seq": n}]
        event = json.loads(bodies[seq])
        event["parameters"] = {"a": [0, *fakes], "b": {"seq": seq}}
        event["kind"], event["query_type"] = "query", "nested"
        bodies[seq] = json.dumps(event, separators=(",", ":"))
    session_id = store_both_shapes(bodies)
    expected = old_shape(session_id)
    assert len(expected) == n and timeline.read_all(session_id) == expected
    edge = timeline.CHUNK
    for offset in (0, 2, 3, 4, edge - 3, edge - 1, edge, edge + 4, edge + 6, n - 3, n - 1):
        for limit in (1, 2, 5, 30):
            assert timeline.read_page(session_id, offset, limit) == expected[offset:][:limit]
    for n_last in (1, 2, 3, 19, 20, 21, 25, edge + 1):
        assert timeline.read_last(session_id, n_last) == expected[-n_last:]
    queries = [event for event in expected if event.kind == "query"]
    assert timeline.read_last_queries(session_id, 10) == queries[-10:]


def test_partial_reads_of_jsonb_style_chunk_text():
    # The demo's SQL writer, and migration 0020, leave jsonb's own text (", " and ": ").
    session_id = store_both_shapes(redis_events(timeline.CHUNK + 10))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE sessions_app_timelinechunk SET events = events::jsonb::text "
            "WHERE session_id = %s",
            [session_id],
        )
    expected = old_shape(session_id)
    assert timeline.read_all(session_id) == expected
    edge = timeline.CHUNK
    assert timeline.read_page(session_id, edge - 3, 6) == expected[edge - 3 : edge + 3]
    assert timeline.read_page(session_id, edge + 8, 9) == expected[edge + 8 :]
    assert timeline.read_last(session_id, 12) == expected[-12:]
