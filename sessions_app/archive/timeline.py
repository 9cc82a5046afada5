"""Reading archived timelines: the one place that knows how they are stored.

The store (archived get_session / get_timeline) and the detail page read through these
functions, so the storage can change shape (today one row per event; later one array per
session) without touching them. Reads are one statement whose JSON array Postgres builds and
Python parses in one call: no ORM object per event.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from sessions_app.domain import TimelineEvent

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Event fields in TimelineEvent order; `occurred_at` travels as epoch microseconds (exact).
_FIELDS = (
    "seq",
    "kind",
    "occurred_at",
    "query_type",
    "parameters",
    "result_summary",
    "execution_ms",
    "cache_hit",
    "error",
    "role",
    "content",
    "tool_name",
    "invocation_id",
    "duration_ms",
    "tokens_in",
    "tokens_out",
    "cost",
)
# One JSON array per event (positional: smaller and faster to parse than objects).
_ROW = (
    "json_build_array(seq, kind, (extract(epoch FROM occurred_at) * 1000000)::bigint, "
    "query_type, parameters, "
    "result_summary, execution_ms, cache_hit, error, role, content, tool_name, invocation_id, "
    "duration_ms, tokens_in, tokens_out, cost::float8)"
)
_PAGE_SQL = f"""
SELECT coalesce(json_agg({_ROW} ORDER BY seq), '[]')::text
FROM sessions_app_sessionevent
WHERE session_id = %s AND seq >= %s AND seq < %s
"""  # noqa: S608 - SQL from constants
_LAST_SQL = f"""
SELECT coalesce(json_agg({_ROW} ORDER BY seq), '[]')::text FROM (
    SELECT * FROM sessions_app_sessionevent WHERE session_id = %s ORDER BY seq DESC LIMIT %s
) last
"""  # noqa: S608 - SQL from constants

# No session has more events than this (a timeline is read whole below it).
ALL = 2**31 - 1


def _events(text: str) -> list[TimelineEvent]:
    rows = json.loads(text)
    events = []
    for row in rows:
        values = dict(zip(_FIELDS, row, strict=True))
        values["occurred_at"] = EPOCH + timedelta(microseconds=values["occurred_at"])
        events.append(TimelineEvent(**values))
    return events


def _fetch(sql: str, params: Sequence[Any]) -> str:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def read_page(session_id: str, offset: int, limit: int) -> list[TimelineEvent]:
    """Events `offset` .. `offset + limit - 1` of an archived session, in order."""
    return _events(_fetch(_PAGE_SQL, [str(session_id), offset, offset + limit]))


def read_last(session_id: str, n: int) -> list[TimelineEvent]:
    """The last `n` events of an archived session, in order."""
    if n <= 0:
        return []
    return _events(_fetch(_LAST_SQL, [str(session_id), n]))


def read_all(session_id: str) -> list[TimelineEvent]:
    """Every event of an archived session, in order."""
    return read_page(session_id, 0, ALL)
