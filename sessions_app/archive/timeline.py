"""Archived timelines: the one place that knows how they are stored.

A timeline is stored in TimelineChunk rows, each the text of a JSON array of up to
TIMELINE_CHUNK_EVENTS events exactly as the live store kept them in Redis. The archiver writes a
chunk by joining the snapshot's JSON texts (`chunk_texts`), which Postgres stores as they are;
reads fetch the one or two rows that hold a page and parse them with orjson, slicing in Python.
The store, history, trace view, exports and admin read through `read_page` / `read_last` /
`read_all` / `read_last_queries`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.db import connection

from sessions_app.domain import TimelineEvent
from sessions_app.models import TIMELINE_CHUNK_EVENTS, TimelineChunk

CHUNK = TIMELINE_CHUNK_EVENTS
TABLE = TimelineChunk._meta.db_table
# Postgres' own epoch: to_timestamp(float8) subtracts it before rounding to microseconds.
_PG_EPOCH_SECONDS = 946_684_800.0
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# Stored keys that are not TimelineEvent values of an archived event.
_DROPPED = ("event_id",)
# TimelineEvent's defaults, for the fields an event's JSON leaves out.
_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(TimelineEvent)
    if f.default is not dataclasses.MISSING and f.name not in _DROPPED
}
_DEFAULTS["event_id"] = ""

# No session has more events than this (a timeline is read whole below it).
ALL = 2**31 - 1

# The chunks that hold events lo .. hi.
_PAGE_SQL = f"""
SELECT chunk, events FROM {TABLE}
WHERE session_id = %(id)s AND chunk BETWEEN %(lo)s / {CHUNK} AND %(hi)s / {CHUNK}
ORDER BY chunk
"""  # noqa: S608 - SQL from constants
# The last n events: from the chunks that can hold them (a chunk is full unless it is the
# last).
_LAST_SQL = f"""
SELECT chunk, events FROM {TABLE}
WHERE session_id = %(id)s AND chunk >= (
    SELECT max(chunk) FROM {TABLE} WHERE session_id = %(id)s
) - %(chunks)s
ORDER BY chunk
"""  # noqa: S608 - SQL from constants
# Every chunk, newest first: the last n queries are looked for from the end.
_NEWEST_FIRST_SQL = f"""
SELECT chunk, events FROM {TABLE} WHERE session_id = %(id)s ORDER BY chunk DESC
"""  # noqa: S608 - SQL from constants


# Every archived event as a row in the old SessionEvent columns (checks, tests, ad-hoc SQL:
# `SELECT ... FROM {EVENT_ROWS} ev`); it expands whole timelines, so never on a request path.
EVENT_ROWS = f"""(
SELECT c.session_id, e.seq, e.kind, to_timestamp(e.occurred_at) AS occurred_at,
    COALESCE(e.query_type, '') AS query_type, COALESCE(e.parameters, '{{}}') AS parameters,
    COALESCE(e.result_summary, '') AS result_summary, e.execution_ms,
    COALESCE(e.cache_hit, false) AS cache_hit, COALESCE(e.error, '') AS error,
    COALESCE(e.role, '') AS role, COALESCE(e.content, '') AS content,
    COALESCE(e.tool_name, '') AS tool_name, COALESCE(e.invocation_id, '') AS invocation_id,
    e.duration_ms, COALESCE(e.tokens_in, 0) AS tokens_in,
    COALESCE(e.tokens_out, 0) AS tokens_out, COALESCE(e.cost, 0) AS cost
FROM {TABLE} c, jsonb_to_recordset(c.events::jsonb) AS e(
    seq int, kind text, occurred_at float8, query_type text, parameters jsonb,
    result_summary text, execution_ms float8, cache_hit boolean, error text, role text,
    content text, tool_name text, invocation_id text, duration_ms float8, tokens_in int,
    tokens_out int, cost numeric)
)"""  # noqa: S608 - SQL from constants


# Where a chunk's archive day (its session's archived_at, the partition key) is read from.
SESSION_DAYS = "(SELECT id, archived_at FROM sessions_app_session)"


def _convert_sql(source: str, where: str = "", days: str | None = SESSION_DAYS) -> str:
    """Chunk rows from a table shaped like the old one-row-per-event SessionEvent table.

    Like the live store's JSON, an event leaves out its blank fields (absent: the default).
    `days`: a relation of (id, archived_at) giving each session's archive day; None before
    the chunk table had one (migration 0014)."""
    day_column, day_value, day_join, day_group = (
        (", archived_at", ", d.archived_at", f"JOIN {days} AS d ON d.id = src.session_id", ", 4")
        if days
        else ("", "", "", "")
    )
    return f"""
INSERT INTO {TABLE} (session_id, chunk, events{day_column})
SELECT session_id, seq / {CHUNK}, jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
    'seq', seq, 'kind', kind, 'occurred_at', extract(epoch FROM occurred_at),
    'query_type', NULLIF(query_type, ''), 'parameters', NULLIF(parameters, '{{}}'),
    'result_summary', NULLIF(result_summary, ''), 'execution_ms', execution_ms,
    'cache_hit', NULLIF(cache_hit, false), 'error', NULLIF(error, ''),
    'role', NULLIF(role, ''), 'content', NULLIF(content, ''),
    'tool_name', NULLIF(tool_name, ''), 'invocation_id', NULLIF(invocation_id, ''),
    'duration_ms', duration_ms, 'tokens_in', NULLIF(tokens_in, 0),
    'tokens_out', NULLIF(tokens_out, 0), 'cost', NULLIF(cost, 0)::float8)) ORDER BY seq)::text
    {day_value}
FROM {source} AS src {day_join} {where}
GROUP BY session_id, seq / {CHUNK}{day_group}
ON CONFLICT DO NOTHING
"""  # noqa: S608 - SQL from constants and our own table names


def convert_rows(
    cursor, source: str, session_ids: list[str] | None = None, days: str | None = SESSION_DAYS
) -> int:
    """Write the timelines held as one row per event in `source` as chunks; chunks written.

    Used by the migration off SessionEvent and by the demo writer's COPY staging table.
    `days`: see _convert_sql.
    """
    if session_ids is None:
        cursor.execute(_convert_sql(source, days=days))
    else:
        where = "WHERE src.session_id = ANY(%s)"
        cursor.execute(_convert_sql(source, where, days), [session_ids])
    return cursor.rowcount


def chunk_texts(events: Sequence[str]) -> list[str]:
    """The JSON array texts of a timeline's chunks, from its events' JSON texts (no parsing)."""
    return ["[" + ",".join(events[i : i + CHUNK]) + "]" for i in range(0, len(events), CHUNK)]


def event_json(event: TimelineEvent | dict[str, Any]) -> str:
    """One event as the store keeps it (factories and tests build timelines with this)."""
    values = dict(event) if isinstance(event, dict) else dict(event.__dict__)
    when = values["occurred_at"]
    if isinstance(when, datetime):
        values["occurred_at"] = when.timestamp()
    for name in _DROPPED:
        values.pop(name, None)
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False, default=float)


def write(cursor, timelines: dict[str, Sequence[str]]) -> None:
    """Store timelines ({session id: event JSON texts in order}); existing chunks are kept."""
    rows = [
        (session_id, n, text)
        for session_id, events in timelines.items()
        for n, text in enumerate(chunk_texts(events))
    ]
    if rows:
        # Each chunk goes into its session's archive day (the partition key).
        cursor.executemany(
            f"INSERT INTO {TABLE} (session_id, chunk, events, archived_at) "  # noqa: S608
            "SELECT %s, %s, %s, archived_at FROM sessions_app_session WHERE id = %s "
            "ON CONFLICT DO NOTHING",
            [(session_id, n, text, session_id) for session_id, n, text in rows],
        )


def _when(seconds: float) -> datetime:
    # Exactly what to_timestamp(float8) gave the old per-event column: microseconds rounded
    # half-to-even after moving to Postgres' epoch.
    return _PG_EPOCH + timedelta(microseconds=round((seconds - _PG_EPOCH_SECONDS) * 1e6))


def decode(text: str) -> Any:
    """A JSON text as Python values (orjson; json for what orjson refuses)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # what orjson refuses (integers past 64 bits) json takes
        return json.loads(text)


def _events(values: Iterable[dict[str, Any]]) -> list[TimelineEvent]:
    events: list[TimelineEvent] = []
    append, new, defaults, when = events.append, object.__new__, _DEFAULTS, _when
    # A 1,000-event timeline is read in a few milliseconds, so __init__ (17 keyword arguments
    # per event) is skipped: each event's attributes are its defaults updated by its JSON.
    # TimelineEvent is a plain dataclass (no slots, no __post_init__), so this is equivalent.
    for value in values:
        value["occurred_at"] = when(value["occurred_at"])
        event = new(TimelineEvent)
        event.__dict__ = {**defaults, **value, "event_id": ""}
        if "parameters" not in value:
            event.parameters = {}
        append(event)
    return events


_BY_ID = "WHERE session_id = %(id)s"


def _rows(
    sql: str, params: dict[str, Any], archived_at: datetime | None = None
) -> list[tuple[int, str]]:
    """Run a read; with the session's `archived_at`, only its day's partition is searched
    (else every day's: about 2 ms more for a full read with 90 days kept)."""
    if archived_at is not None:
        sql = sql.replace(_BY_ID, f"{_BY_ID} AND archived_at = %(at)s")
        params = {**params, "at": archived_at}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# How event boundaries look in a chunk's text: the store's compact JSON joined by the archiver
# (`[{"seq":0,...},{"seq":1,...}]`), and jsonb's own text (`[{"seq": 0, ...}, {"seq": 1, ...}]`:
# chunks converted by migration 0020, or written by the demo's SQL).
_LAYOUTS = (('{"seq":', ","), ('{"seq": ', ", "))


def _pieces(text: str) -> tuple[list[str], str] | None:
    """The chunk's text split at what look like event boundaries (no parsing), and the
    separator that joins pieces back; None for a layout other than _LAYOUTS."""
    for head, sep in _LAYOUTS:
        if text.startswith(head, 1) and text[len(head) + 1 : len(head) + 2].isdigit():
            parts = text[1:-1].split(sep + head)
            return [parts[0], *(head + part for part in parts[1:])], sep
    return None


def _decode_span(pieces: list[str], sep: str) -> list[Any] | None:
    """The pieces' events when they are exactly whole events, else None.

    Splitting also cut at every object nested in an event whose first key is "seq". The pieces
    given always run from the chunk's start or to its end, so joined back they are the exact
    text between a real boundary and the chunk's start or end: a false cut at their other end
    leaves that text unbalanced (decoding fails), one inside them makes fewer events than pieces.
    """
    try:
        values = decode("[" + sep.join(pieces) + "]")
    except ValueError:  # orjson's and json's decode errors are ValueErrors
        return None
    return values if isinstance(values, list) and len(values) == len(pieces) else None


def _cut(text: str, start: int, stop: int | None = None, first: int | None = None) -> list[Any]:
    """decode(text)[start:stop] of one chunk, decoding only the events it needs when it can.

    `first` is the timeline position of the chunk's first event (a page read): a span that does
    not start at the chunk's start is checked to be numbered by position (`seq`) from there,
    which a false cut before it would break. A tail (start < 0, no stop) needs no `first`: it
    runs to the chunk's end and counting is enough. Anything unsure decodes the whole chunk.
    """
    split = _pieces(text)
    if split is not None:
        pieces, sep = split
        lo, hi, _ = slice(start, stop).indices(len(pieces))
        if lo == 0 or (lo < hi and hi < len(pieces) and hi <= len(pieces) - lo):
            values = _decode_span(pieces[:hi], sep)  # from the chunk's start
            if values is not None:
                return values[lo:]
        elif lo < hi:
            values = _decode_span(pieces[lo:], sep)  # to the chunk's end
            tail = first is None and start < 0 and stop is None
            numbered = tail or (
                first is not None
                and all(
                    isinstance(value, dict) and value.get("seq") == first + lo + k
                    for k, value in enumerate(values or ())
                )
            )
            if values is not None and numbered:
                return values[: hi - lo]
    return decode(text)[start:stop]


# `archived_at` (optional, every read): the session's, when the caller has its row; it limits
# the read to the session's day partition.


def read_page(
    session_id: str, offset: int, limit: int, archived_at: datetime | None = None
) -> list[TimelineEvent]:
    """Events `offset` .. `offset + limit - 1` of an archived session, in order."""
    if limit <= 0 or offset < 0:
        return []
    lo, hi = offset, offset + limit - 1
    rows = _rows(_PAGE_SQL, {"id": str(session_id), "lo": lo, "hi": hi}, archived_at)
    whole = [
        text[1:-1] for chunk, text in rows if lo <= chunk * CHUNK and hi >= (chunk + 1) * CHUNK - 1
    ]
    if len(whole) == len(rows):  # the common case, a whole timeline: one decode
        parts = [part for part in whole if part]
        return _events(decode("[" + ",".join(parts) + "]") if parts else [])
    values: list[dict[str, Any]] = []
    for chunk, text in rows:  # each chunk cut to the page on its own, as the page's SQL did
        first = chunk * CHUNK
        values += _cut(text, max(lo - first, 0), hi - first + 1, first=first)
    return _events(values)


def read_last(session_id: str, n: int, archived_at: datetime | None = None) -> list[TimelineEvent]:
    """The last `n` events of an archived session, in order."""
    if n <= 0:
        return []
    # The last chunk may hold a single event: n events span at most n // CHUNK + 1 more.
    rows = _rows(_LAST_SQL, {"id": str(session_id), "chunks": n // CHUNK + 1}, archived_at)
    values: list[Any] = []
    for _, text in reversed(rows):  # newest chunk first, each cut to what is still missing
        values[:0] = _cut(text, -(n - len(values)), None)
        if len(values) >= n:
            break
    return _events(values[-n:])


def read_all(session_id: str, archived_at: datetime | None = None) -> list[TimelineEvent]:
    """Every event of an archived session, in order."""
    return read_page(session_id, 0, ALL, archived_at)


def read_last_queries(
    session_id: str, n: int, archived_at: datetime | None = None
) -> list[TimelineEvent]:
    """The last `n` query events of an archived session, in order."""
    if n <= 0:
        return []
    newest_first: list[dict[str, Any]] = []
    for _, text in _rows(_NEWEST_FIRST_SQL, {"id": str(session_id)}, archived_at):
        values = decode(text)
        for value in reversed(values):
            if value.get("kind") == "query":
                newest_first.append(value)
                if len(newest_first) == n:
                    return _events(reversed(newest_first))
    return _events(reversed(newest_first))


def count(session_id: str) -> int:
    """How many events an archived session's timeline holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT coalesce(sum(json_array_length(events::json)), 0) FROM {TABLE} "  # noqa: S608
            "WHERE session_id = %s",
            [str(session_id)],
        )
        return int(cursor.fetchone()[0])
