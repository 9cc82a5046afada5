"""The session trace: timeline events laid out on one time axis, grouped into turns and steps.

Reads timelines only through a `fetch(offset, limit)` callable (the store's get_timeline, or its
Postgres fallback when Redis is down), so it does not care how a timeline is stored.

- A *turn* starts at each user message and runs to the next one.
- A *step* is one event, or a tool call grouped with its result message (same invocation_id).
- Bars: a tool call or query is recorded when it finishes, so its bar ends at `occurred_at` and
  starts `duration_ms` (`execution_ms`) earlier; a message is a point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# Events rendered per page (first page, then one more each time the end scrolls into view).
TRACE_PAGE = 100
# The store hands out at most this many events per call.
STORE_PAGE = 500
# Events read when the page opens to find every error ("jump to next error"). Sessions longer
# than this list the errors among their first SCAN_LIMIT events only.
SCAN_LIMIT = 5000
# Ticks on the shared time axis.
AXIS_TICKS = 5

Fetch = Callable[[int, int], tuple[list[Any], int]]


@dataclass
class Step:
    """One event with its place on the session's time axis (seconds and percent of the span)."""

    event: Any
    offset_s: float
    bar_start_pct: float
    bar_width_pct: float
    turn: int | None = None
    is_turn_start: bool = False


@dataclass
class Item:
    """What one list entry shows: a single step, or a tool call grouped with its result."""

    steps: list[Step]
    invocation_id: str = ""

    @property
    def grouped(self) -> bool:
        return len(self.steps) > 1


@dataclass
class Axis:
    start: datetime
    span_s: float
    ticks: list[tuple[float, float]] = field(default_factory=list)  # (percent, seconds)


def axis_for(session: Any) -> Axis:
    """The shared time axis: session start to its last activity (or end), at least 1 s."""
    start = session.created_at
    ends = [t for t in (session.last_activity_at, session.ended_at) if t is not None]
    end = max(ends) if ends else start
    span = max((end - start).total_seconds(), 1.0)
    ticks = [(100.0 * i / (AXIS_TICKS - 1), span * i / (AXIS_TICKS - 1)) for i in range(AXIS_TICKS)]
    return Axis(start, span, ticks)


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 100.0)


def step_for(event: Any, axis: Axis) -> Step:
    """The event placed on the axis; bars narrower than 0.3 % still show as a sliver."""
    offset = (event.occurred_at - axis.start).total_seconds()
    ms = event.duration_ms if event.kind == "tool_call" else getattr(event, "execution_ms", None)
    width_s = (ms or 0) / 1000
    start = offset - width_s
    start_pct = _clamp(100 * start / axis.span_s)
    end_pct = _clamp(100 * offset / axis.span_s)
    width_pct = max(end_pct - start_pct, 0.3)
    return Step(event, offset, min(start_pct, 100 - width_pct), width_pct)


def read_events(fetch: Fetch, offset: int, limit: int) -> tuple[list[Any], int]:
    """Events [offset, offset + limit) in store-sized calls, and the timeline's total."""
    events: list[Any] = []
    total = 0
    while len(events) < limit:
        want = min(STORE_PAGE, limit - len(events))
        chunk, total = fetch(offset + len(events), want)
        events.extend(chunk)
        if len(chunk) < want or offset + len(events) >= total:
            break
    return events, total


def error_seqs(events: Iterable[Any]) -> list[int]:
    """Positions of the failed queries and tool calls, in timeline order."""
    return [event.seq for event in events if event.error]


def build_items(events: list[Any], axis: Axis, turn: int | None = None) -> list[Item]:
    """Steps of a page in order: each tool call joined by the later events of its invocation."""
    items: list[Item] = []
    by_invocation: dict[str, Item] = {}
    for event in events:
        step = step_for(event, axis)
        if event.kind == "message" and event.role == "user":
            turn = event.seq
            step.is_turn_start = True
        step.turn = turn
        invocation = event.invocation_id
        if invocation and invocation in by_invocation:
            by_invocation[invocation].steps.append(step)
            continue
        item = Item([step], invocation)
        if invocation:
            by_invocation[invocation] = item
        items.append(item)
    return items


@dataclass
class TracePage:
    items: list[Item]
    total: int
    offset: int
    next_offset: int | None
    errors: list[int]  # every error's seq (first page only; empty on later pages)
    axis: Axis
    turn: int | None  # the turn the page's last event belongs to (carried to the next page)


def trace_page(
    fetch: Fetch,
    session: Any,
    offset: int = 0,
    upto: int | None = None,
    turn: int | None = None,
) -> TracePage:
    """One page of the trace from `offset`, extended to include event `upto` when given.

    The first page (offset 0) also reads up to SCAN_LIMIT events to list every error.
    """
    axis = axis_for(session)
    limit = TRACE_PAGE
    if upto is not None and upto >= offset:
        limit = min(max(limit, upto - offset + 1 + TRACE_PAGE // 4), SCAN_LIMIT)
    errors: list[int] = []
    if offset == 0:
        scanned, total = read_events(fetch, 0, SCAN_LIMIT)
        errors = error_seqs(scanned)
        events = scanned[:limit]
    else:
        events, total = read_events(fetch, offset, limit)
    items = build_items(events, axis, turn)
    end = offset + len(events)
    last_turn = items[-1].steps[-1].turn if items else turn
    return TracePage(
        items=items,
        total=total,
        offset=offset,
        next_offset=end if end < total and events else None,
        errors=errors,
        axis=axis,
        turn=last_turn,
    )


def offset_text(seconds: float) -> str:
    """ "+1:05.300" style offset from the session start (hours shown only when needed)."""
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    whole = int(seconds)
    millis = round((seconds - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}:{minutes:02d}:{secs:02d}.{millis:03d}"
    return f"{sign}{minutes}:{secs:02d}.{millis:03d}"


def axis_label(seconds: float) -> str:
    """A tick label: "0s", "45s", "3m 20s", "1h 5m"."""
    return str(timedelta(seconds=round(seconds))) if seconds >= 3600 else _short(seconds)


def _short(seconds: float) -> str:
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.2f}".rstrip("0") + "s"  # short sessions: 0.25s, 2.5s
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m {secs}s" if secs else f"{minutes}m"
