"""Selectors for the history browser: filtered archived sessions, keyset pages, export rows.

Pages use keyset pagination on (sort column, id), served by an index per sortable column
(models.py and migration 0003), so page 1,000 costs what page 1 costs. Totals are never
counted over the whole table: a filtered count stops at COUNT_CAP and an unfiltered one is
Postgres's own estimate.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import OperationalError, transaction
from django.db.models import BooleanField, F, QuerySet
from django.db.models.expressions import RawSQL
from psycopg.errors import QueryCanceled

from sessions_app import explore, validation
from sessions_app.archive import timeline
from sessions_app.exceptions import InvalidInput
from sessions_app.metrics import day_bounds
from sessions_app.models import Session
from sessions_app.replica import read_connection, reads_replica, replica_alias

# URL sort key -> (column, SQL type of the keyset value)
SORT_COLUMNS = {
    "created": ("created_at", "timestamptz"),
    "duration": ("duration_seconds", "float8"),
    "queries": ("query_count", "integer"),
    "errors": ("error_count", "integer"),
    "cost": ("cost", "numeric"),
    "tokens": ("total_tokens", "bigint"),
}
# Sort columns that are expressions: the annotation and the SQL its index is built on (0007).
SORT_EXPRESSIONS = {"total_tokens": "(tokens_in + tokens_out)"}
DEFAULT_SORT = "-created"
COUNT_CAP = 1000
# A purpose search with at most this many matches sorts them itself (see _text_candidates).
TEXT_CANDIDATES = 5000
TEXT_PROBE_MS = 75
EXPORT_CHUNK = 2000

LIST_FIELDS = (
    "id",
    "user_id",
    "session_type",
    "status",
    "assets",
    "tags",
    "purpose",
    "created_at",
    "ended_at",
    "duration_seconds",
    "query_count",
    "error_count",
    "cache_hits",
    "tokens_in",
    "tokens_out",
    "cost",
    "total_tokens",
)
EXPORT_FIELDS = (
    "id",
    "user_id",
    "session_type",
    "status",
    "created_at",
    "last_activity_at",
    "ended_at",
    "archived_at",
    "duration_seconds",
    "query_count",
    "cache_hits",
    "error_count",
    "message_count",
    "tool_call_count",
    "total_execution_ms",
    "tokens_in",
    "tokens_out",
    "cost",
    "assets",
    "tags",
    "purpose",
    "source",
    "device",
)

_WORD_RE = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class HistoryFilters:
    """What the history browser filters on; None or "" means "any"."""

    user: str = ""
    session_type: str = ""
    status: str = ""
    tag: str = ""
    asset: str = ""
    start: date | None = None
    end: date | None = None
    text: str = ""
    has_errors: bool | None = None
    min_queries: int | None = None
    # The user page wants that one id; History matches the user and tag in any case.
    exact_user: bool = False

    @property
    def is_empty(self) -> bool:
        return all(
            getattr(self, f.name) in (None, "") for f in fields(self) if f.name != "exact_user"
        )


def text_query(text: str) -> str:
    """A prefix-matching tsquery for the words of `text` ("risk tech" -> "risk:* & tech:*")."""
    words = _WORD_RE.findall(text.lower())[:8]
    return " & ".join(f"{word}:*" for word in words)


def filter_sessions(filters: HistoryFilters) -> QuerySet[Session]:
    """Archived sessions matching every given filter (unordered), with `total_tokens`."""
    query = Session.objects.annotate(total_tokens=F("tokens_in") + F("tokens_out"))
    if filters.user and filters.exact_user:
        query = query.filter(user_id=filters.user)
    elif filters.user:
        # Every stored spelling of the id (session_user_ci_idx), then the (user_id, ...) indexes.
        query = query.filter(user_id__in=explore.user_ids_matching(filters.user))
    if filters.session_type:
        query = query.filter(session_type=filters.session_type)
    if filters.status:
        query = query.filter(status=filters.status)
    if filters.tag:
        # Any casing of the tag: GIN `tags && ARRAY[spellings]`.
        query = query.filter(tags__overlap=explore.tag_spellings(filters.tag))
    if filters.asset:
        query = query.filter(assets__contains=[filters.asset])
    if filters.start or filters.end:
        start, end = day_bounds(filters.start or date.min, filters.end or date.max)
        if filters.start:
            query = query.filter(created_at__gte=start)
        if filters.end:
            query = query.filter(created_at__lt=end)
    if filters.text:
        tsquery = text_query(filters.text)
        if tsquery:
            # Same expression as the session_purpose_fts index (migration 0003).
            query = query.filter(
                RawSQL(
                    "to_tsvector('simple', purpose) @@ to_tsquery('simple', %s)",
                    (tsquery,),
                    output_field=BooleanField(),
                )
            )
    if filters.has_errors is True:
        query = query.filter(error_count__gt=0)
    elif filters.has_errors is False:
        query = query.filter(error_count=0)
    if filters.min_queries:
        query = query.filter(query_count__gte=filters.min_queries)
    return query


def parse_sort(sort: str) -> tuple[str, bool]:
    """("created", descending) from "-created"; InvalidInput for an unknown column."""
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    if name not in SORT_COLUMNS:
        raise InvalidInput("sort", f"must be one of {', '.join(SORT_COLUMNS)}")
    return name, descending


def _order(column: str, descending: bool) -> list[str]:
    prefix = "-" if descending else ""
    return [f"{prefix}{column}", f"{prefix}id"]


# ---- cursors ------------------------------------------------------------------------------------


def encode_cursor(sort: str, direction: str, value: Any, pk: str) -> str:
    """An opaque cursor: after (direction "n") or before ("p") the row (value, pk) in `sort`."""
    if isinstance(value, datetime):
        value = value.isoformat()
    elif isinstance(value, Decimal):
        value = str(value)  # exact: a float could skip or repeat rows at the page boundary
    raw = json.dumps([sort, direction, value, str(pk)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[str, Any, str]:
    """(direction, value, pk) of a cursor made for `sort`; InvalidInput when it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        cursor_sort, direction, value, pk = json.loads(base64.urlsafe_b64decode(padded))
        if cursor_sort != sort or direction not in ("n", "p"):
            raise ValueError
        pk = validation.session_id(pk, "cursor")
        column_type = SORT_COLUMNS[sort.lstrip("-")][1]
        if column_type == "timestamptz":
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError
        elif column_type in ("integer", "bigint"):
            # Within the column's range: a crafted 1e30 must not become a 500.
            limit = 2**31 if column_type == "integer" else 2**63
            if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= limit:
                raise ValueError
        elif column_type == "numeric":
            value = Decimal(value) if isinstance(value, str) else None
            if value is None or not value.is_finite() or abs(value) >= Decimal("1e30"):
                raise ValueError
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)  # json.loads accepts NaN and Infinity
            or abs(value) > 1e300
        ):
            raise ValueError
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError, ArithmeticError):
        raise InvalidInput(
            "cursor", "is not a page link for this sort order; start again from page one"
        ) from None
    return direction, value, pk


def _keyset(column: str, column_type: str, op: str, value: Any, pk: str) -> RawSQL:
    # A row comparison lets Postgres seek straight to the cursor in the (column, id) index.
    column = SORT_EXPRESSIONS.get(column, column)
    return RawSQL(  # noqa: S611 - column and op come from SORT_COLUMNS and code, values bound
        f"({column}, id) {op} (%s::{column_type}, %s::text)",
        (value, pk),
        output_field=BooleanField(),
    )


@dataclass
class HistoryPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None
    prev_cursor: str | None
    count: int = 0  # matching sessions (see count_exact)
    count_exact: bool = True  # False: `count` is a floor (COUNT_CAP) or Postgres's estimate


def _text_candidates(query: QuerySet[Session]) -> list[str] | None:
    """Ids of every session `query` matches, or None when there are too many to sort cheaply.

    Postgres cannot estimate prefix text searches, so left alone it may walk the created_at
    index filtering a million rows for a rare word. Collecting the matches through the text
    index first and sorting only those is cheap when they are few. Common words match so many
    rows that the collection hits its time budget or TEXT_CANDIDATES; walking in sort order
    then finds a page quickly, so the normal plan is right for them.
    """
    try:
        db = read_connection()
        with transaction.atomic(using=db.alias), db.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute(f"SET LOCAL statement_timeout = {TEXT_PROBE_MS}")
            ids = list(query.order_by().values_list("id", flat=True)[: TEXT_CANDIDATES + 1])
            # SET LOCAL outlives a released savepoint: restore the settings for what follows.
            cursor.execute("RESET enable_seqscan; RESET enable_indexscan; RESET statement_timeout")
    except OperationalError as error:
        if not isinstance(error.__cause__, QueryCanceled):
            raise
        return None
    return ids if len(ids) <= TEXT_CANDIDATES else None


def _count(filters: HistoryFilters, query: QuerySet[Session]) -> tuple[int, bool]:
    """(count, exact): filtered counts stop at COUNT_CAP; the whole table is Postgres's estimate."""
    if filters.is_empty:
        with read_connection().cursor() as cursor:
            cursor.execute(
                # Summed over the day partitions (the parent itself holds no estimate).
                "SELECT COALESCE(sum(greatest(c.reltuples, 0)), 0)::bigint "
                "FROM pg_partition_tree('sessions_app_session'::regclass) t "
                "JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf"
            )
            estimate = cursor.fetchone()[0]
        if estimate > COUNT_CAP:
            return estimate, False
        # Small (or never analysed) tables: count for real, it is cheap.
    capped = query.order_by().values("id")[: COUNT_CAP + 1].count()
    return min(capped, COUNT_CAP), capped <= COUNT_CAP


@reads_replica
def search_sessions(
    filters: HistoryFilters, sort: str = DEFAULT_SORT, cursor: str | None = None, per_page: int = 50
) -> HistoryPage:
    """One page of matching sessions in `sort` order, with cursors to the pages around it."""
    name, descending = parse_sort(sort)
    column, column_type = SORT_COLUMNS[name]
    query = filter_sessions(filters)
    counted: tuple[int, bool] | None = None
    if filters.text:
        ids = _text_candidates(query)
        if ids is not None:
            query = Session.objects.annotate(total_tokens=F("tokens_in") + F("tokens_out")).filter(
                RawSQL("id = ANY(%s::text[])", (ids,), output_field=BooleanField())
            )
            counted = (len(ids), True)
        else:  # too many to collect in time, so surely more than COUNT_CAP: skip counting
            counted = (COUNT_CAP, False)
    count, count_exact = counted or _count(filters, query)
    direction = "n"
    if cursor:
        direction, value, pk = decode_cursor(cursor, sort)
        forward = direction == "n"
        op = "<" if descending == forward else ">"
        query = query.filter(_keyset(column, column_type, op, value, pk))
    # A page before the cursor is read in reverse order and flipped back.
    reverse = direction == "p"
    rows = list(
        query.order_by(*_order(column, descending != reverse)).values(*LIST_FIELDS)[: per_page + 1]
    )
    more = len(rows) > per_page
    rows = rows[:per_page]
    if reverse:
        rows.reverse()
    has_next = more if not reverse else True
    has_prev = bool(cursor) if not reverse else more
    next_cursor = prev_cursor = None
    if rows and has_next:
        next_cursor = encode_cursor(sort, "n", rows[-1][column], rows[-1]["id"])
    if rows and has_prev:
        prev_cursor = encode_cursor(sort, "p", rows[0][column], rows[0]["id"])
    return HistoryPage(rows, next_cursor, prev_cursor, count, count_exact)


def export_rows(filters: HistoryFilters, sort: str = DEFAULT_SORT) -> Iterator[dict[str, Any]]:
    """Every matching session in `sort` order, streamed from a server-side cursor."""
    name, descending = parse_sort(sort)
    column = SORT_COLUMNS[name][0]
    query = filter_sessions(filters).order_by(*_order(column, descending))
    # Streamed after this returns (outside any replica_reads block): name the replica here.
    query = query.using(replica_alias())
    return query.values(*EXPORT_FIELDS).iterator(chunk_size=EXPORT_CHUNK)


def archived_timeline(session_id: str, offset: int, limit: int) -> tuple[list, int]:
    """A page of an archived session's timeline straight from Postgres (when Redis is down)."""
    session = Session.objects.filter(id=session_id).values_list(
        "query_count", "message_count", "tool_call_count", "archived_at"
    )
    row = session.first()
    if row is None:
        return [], 0
    return timeline.read_page(session_id, offset, limit, row[3]), sum(row[:3])
