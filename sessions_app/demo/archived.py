"""Archived demo sessions: generated in chunks in pure Python and written with COPY.

Rows look like the archiver's: counters agree with the events, events numbered from 0,
duration_seconds, archived_at and expires_at filled in. Chunk `i` of a plan is generated from
its own seed, so the data is the same whether one process writes it or several.
"""

import bisect
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sessions_app.demo import catalogue as cat
from sessions_app.demo import content
from sessions_app.models import Session, SessionEvent

SESSION_COLUMNS = (
    "id", "user_id", "session_type", "status", "assets", "tags", "purpose", "source", "device",
    "ip", "created_at", "last_activity_at", "expires_at", "ended_at", "archived_at",
    "duration_seconds", "context", "intermediate_results", "preferences", "metadata",
    "query_count", "cache_hits", "error_count", "message_count", "tool_call_count",
    "total_execution_ms", "tokens_in", "tokens_out", "cost", "query_type_counts",
)  # fmt: skip
EVENT_COLUMNS = (
    "session_id", "seq", "occurred_at", "kind", "query_type", "parameters", "result_summary",
    "execution_ms", "cache_hit", "error", "role", "content", "tool_name", "invocation_id",
    "duration_ms", "tokens_in", "tokens_out", "cost",
)  # fmt: skip
SESSION_COPY = f"COPY {Session._meta.db_table} ({', '.join(SESSION_COLUMNS)}) FROM STDIN"
# Events are generated as one row each (the old per-event shape), staged in a temp table and
# turned into timeline chunks in SQL by the same statement that migrated the old table.
EVENT_STAGE = "demo_stage_event"
_STAGE_COLUMNS = ", ".join(EVENT_COLUMNS)
EVENT_STAGE_DDL = f"""
CREATE TEMP TABLE IF NOT EXISTS {EVENT_STAGE} ON COMMIT DELETE ROWS AS
SELECT {_STAGE_COLUMNS} FROM {SessionEvent._meta.db_table} WITH NO DATA
"""  # noqa: S608 - from constants
EVENT_COPY = f"COPY {EVENT_STAGE} ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
# Each staged session's archive day, so its chunks land in its partition without a lookup of
# the session table by id (which probes every day's partition).
DAY_STAGE = "demo_stage_day"
DAY_STAGE_DDL = f"""
CREATE TEMP TABLE IF NOT EXISTS {DAY_STAGE} (id text, archived_at timestamptz)
ON COMMIT DELETE ROWS
"""
_ARCHIVED_AT = SESSION_COLUMNS.index("archived_at")

DAY = 86400.0
IDLE_TIMEOUT_SECONDS = 120 * 60
CLEANUP_INTERVAL_SECONDS = 60 * 60

_TYPES = list(cat.SESSION_TYPE_SHARES)
_TYPE_WEIGHTS = list(cat.SESSION_TYPE_SHARES.values())
_STATUSES = list(cat.STATUS_SHARES)
_STATUS_WEIGHTS = list(cat.STATUS_SHARES.values())
_TTLS = list(cat.TTL_HOURS_SHARES)
_TTL_WEIGHTS = list(cat.TTL_HOURS_SHARES.values())
_TOOLS = list(cat.TOOLS)
_PREFERENCES_COPY = [content.copy_json(p) for p in content.PREFERENCES]


@dataclass(frozen=True)
class ArchivePlan:
    """What to generate: `sessions` archived sessions over `days` days ending at `until`."""

    sessions: int
    until: float  # epoch seconds; nothing generated happens after it
    days: int = 30
    seed: int = 0
    user_prefix: str = ""  # the benchmark marks its rows with "bench-..."
    events_per_session: int | None = None  # a fixed count instead of ~20 on average
    chunk_size: int = 2000

    @property
    def chunk_count(self) -> int:
        return math.ceil(self.sessions / self.chunk_size)

    def chunk_sessions(self, index: int) -> int:
        return min(self.chunk_size, self.sessions - index * self.chunk_size)

    @property
    def user_count(self) -> int:
        return max(40, min(60_000, self.sessions // 30))


@dataclass
class Chunk:
    session_text: str
    event_text: str
    sessions: int
    events: int


_minute_cache: dict[int, str] = {}


def _ts(epoch: float) -> str:
    """COPY text for a UTC timestamp at millisecond precision (the minute prefix is cached)."""
    ms = round(epoch * 1000)
    minute, rest = divmod(ms, 60000)
    prefix = _minute_cache.get(minute)
    if prefix is None:
        if len(_minute_cache) > 500_000:
            _minute_cache.clear()
        prefix = _minute_cache[minute] = time.strftime("%Y-%m-%d %H:%M:", time.gmtime(minute * 60))
    return f"{prefix}{rest // 1000:02d}.{rest % 1000:03d}+00"


@lru_cache(maxsize=8)
def _hours(plan: ArchivePlan) -> tuple[list[float], list[float], list[float]]:
    """Start, length and cumulative weight of every hour up to `until`.

    Weekdays are busy and weekends quiet, European and US market hours peak, and traffic grows
    gently over the period; the hour that holds `until` counts only its elapsed part.
    """
    last_day = math.floor(plan.until / DAY) * DAY
    starts, lengths, cumulative, total = [], [], [], 0.0
    for day in range(plan.days):
        day_start = last_day - (plan.days - 1 - day) * DAY
        day_weight = cat.WEEKDAY_WEIGHTS[time.gmtime(day_start).tm_wday]
        day_weight *= 0.85 + 0.3 * day / max(plan.days, 1)
        for hour in range(24):
            start = day_start + hour * 3600
            length = min(3600.0, plan.until - start)
            if length <= 0:
                break
            total += day_weight * cat.HOUR_WEIGHTS[hour] * length / 3600
            starts.append(start)
            lengths.append(length)
            cumulative.append(total)
    return starts, lengths, cumulative


def _creation_times(rng: random.Random, plan: ArchivePlan, index: int, n: int) -> list[float]:
    """Sorted creation times of chunk `index`: its slice of the period's traffic.

    Chunks follow each other in time, so every time-ordered index grows at its right edge
    instead of taking inserts all over (which is most of what makes bulk loads slow).
    """
    starts, lengths, cumulative = _hours(plan)
    total = cumulative[-1]
    low = index * plan.chunk_size / plan.sessions * total
    high = (index * plan.chunk_size + n) / plan.sessions * total
    times = []
    last = len(cumulative) - 1
    for x in sorted(low + (high - low) * rng.random() for _ in range(n)):
        hour = min(bisect.bisect_right(cumulative, x), last)
        before = cumulative[hour - 1] if hour else 0.0
        fraction = (x - before) / ((cumulative[hour] - before) or 1.0)
        times.append(starts[hour] + min(fraction, 1.0) * lengths[hour])
    return times


def _uuid(rng: random.Random, created: float) -> str:
    """A UUIDv7 (RFC 9562): creation milliseconds, then random bits."""
    bits = (int(created * 1000) << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    bits |= (0x2 << 62) | rng.getrandbits(62)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def generate_chunk(plan: ArchivePlan, index: int) -> Chunk:
    """COPY text for chunk `index` of the plan: its sessions and their events."""
    rng = random.Random(plan.seed * 1_000_003 + index)  # noqa: S311 - demo data
    user_names, user_weights = content.users(plan.seed, plan.user_count, plan.user_prefix)
    n = plan.chunk_sessions(index)
    created = _creation_times(rng, plan, index, n)
    session_types = rng.choices(_TYPES, _TYPE_WEIGHTS, k=n)
    statuses = rng.choices(_STATUSES, _STATUS_WEIGHTS, k=n)
    users = rng.choices(user_names, cum_weights=user_weights, k=n)
    ttls = rng.choices(_TTLS, _TTL_WEIGHTS, k=n)
    session_lines: list[str] = []
    event_lines: list[str] = []
    for i in range(n):
        _session(
            rng,
            plan,
            session_types[i],
            statuses[i],
            created[i],
            users[i],
            ttls[i],
            session_lines,
            event_lines,
        )
    return Chunk("".join(session_lines), "".join(event_lines), n, len(event_lines))


def _event_count(rng: random.Random, plan: ArchivePlan, status: str) -> int:
    if plan.events_per_session is not None:
        return plan.events_per_session
    # Lognormal around 20 with a long tail; abandoned sessions stop early.
    count = int(rng.lognormvariate(2.8 if status != "abandoned" else 2.2, 0.65)) + 1
    return min(count, 400)


def _session(rng, plan, session_type, status, created, user, ttl_hours, out_sessions, out_events):
    assets = content.pick_assets(rng, session_type)
    n_events = _event_count(rng, plan, status)
    error_rate = 0.12 if status == "failed" else 0.015
    # Each piece: (seconds after creation, COPY text after the occurred_at column)
    if session_type == "agent":
        pieces, counters = _agent_events(rng, assets, n_events, error_rate)
    else:
        pieces, counters = _analysis_events(rng, session_type, assets, n_events, error_rate)
    span = pieces[-1][0] if pieces else 0.0
    last_activity = created + span

    expires = created + ttl_hours * 3600
    while expires < last_activity + 60:  # the client extended it to keep working
        expires += 24 * 3600
    if status == "abandoned" and last_activity + IDLE_TIMEOUT_SECONDS >= expires:
        status = "expired"  # it would have expired before anyone noticed it idle
    # As the archiver writes them: end_session stamps ended_at and archives at once; the idle
    # sweep sets ended_at to the last activity; expired sessions keep ended_at empty.
    if status in ("completed", "failed"):
        ended = last_activity + rng.uniform(2, 240)
        archived = ended + rng.uniform(0.02, 0.8)
    elif status == "abandoned":
        ended = last_activity
        archived = ended + IDLE_TIMEOUT_SECONDS + rng.uniform(1, CLEANUP_INTERVAL_SECONDS)
    else:
        ended = None
        archived = expires + rng.uniform(1, CLEANUP_INTERVAL_SECONDS)
    if archived > plan.until:  # keep everything in the past, shifting the whole session back
        shift = archived - plan.until + rng.uniform(60, 4 * 3600)
        created -= shift
        last_activity -= shift
        expires -= shift
        archived -= shift
        if ended is not None:
            ended -= shift
    end = ended if ended is not None else last_activity
    duration = (round(end * 1000) - round(created * 1000)) / 1000  # as stored, to the ms

    session_id = _uuid(rng, created)
    prefix = f"{session_id}\t"
    ts = _ts
    for seq, (offset, rest) in enumerate(pieces):
        out_events.append(f"{prefix}{seq}\t{ts(created + offset)}\t{rest}\n")

    q, hits, errors, messages, tools, exec_tenths, tok_in, tok_out, micro_usd, qtypes = counters
    tags = rng.sample(cat.TAGS[session_type], rng.choices((0, 1, 2, 3), (25, 40, 25, 10))[0])
    source, device, ip = content.client(rng, session_type)
    out_sessions.append(
        "\t".join(
            (
                session_id,
                user,
                session_type,
                status,
                "{" + ",".join(assets) + "}",
                "{" + ",".join(tags) + "}",
                content.copy_text(content.purpose(rng, session_type, assets)),
                source,
                device,
                ip or "\\N",
                ts(created),
                ts(last_activity),
                ts(expires),
                "\\N" if ended is None else ts(ended),
                ts(archived),
                f"{duration:.3f}",
                content.copy_json(content.context(rng, session_type, assets)),
                content.copy_json(content.intermediate_results(rng, session_type, assets)),
                rng.choice(_PREFERENCES_COPY),
                content.copy_json(content.metadata(rng)),
                str(q),
                str(hits),
                str(errors),
                str(messages),
                str(tools),
                str(exec_tenths / 10),
                str(tok_in),
                str(tok_out),
                f"{micro_usd // 1_000_000}.{micro_usd % 1_000_000:06d}",
                # {query_type: queries}, as the archiver stores it; names need no escaping.
                "{" + ", ".join(f'"{name}": {n}' for name, n in qtypes.items()) + "}",
            )
        )
        + "\n"
    )


def _query_piece(rng, symbol, query_type, error_rate):
    """(COPY text, execution tenths of ms, cache hit, error) of one query."""
    params, summary = rng.choice(content.query_variants_copy(symbol, query_type))
    if rng.random() < error_rate:
        error = rng.choice(cat.QUERY_ERRORS)
        tenths = 50000 if error.startswith("Upstream timeout") else int(rng.uniform(20, 900) * 10)
        text = f"query\t{query_type}\t{params}\t\t{tenths / 10}\tf\t{error}\t\t\t\t\t\\N\t0\t0\t0"
        return text, tenths, False, True
    hit = rng.random() < cat.QUERY_CACHE_RATE[query_type]
    if hit:
        tenths = int(rng.lognormvariate(1.0, 0.5) * 10) + 2
    else:
        tenths = int(cat.QUERY_MEDIAN_MS[query_type] * rng.lognormvariate(0, 0.55) * 10) + 5
    flag = "t" if hit else "f"
    text = (
        f"query\t{query_type}\t{params}\t{summary}\t{tenths / 10}\t{flag}\t\t\t\t\t\t\\N\t0\t0\t0"
    )
    return text, tenths, hit, False


def _message_piece(role, text, tool_name="", invocation_id=""):
    return (
        f"message\t\t{{}}\t\t\\N\tf\t\t{role}\t{text}\t{tool_name}\t{invocation_id}\t\\N\t0\t0\t0"
    )


def _analysis_events(rng, session_type, assets, n_events, error_rate):
    """Mostly queries with a few chat messages; gaps of seconds to minutes."""
    query_types = rng.choices(cat.QUERY_TYPES, cat.QUERY_MIX[session_type], k=n_events)
    pieces = []
    t = rng.uniform(0.5, 8)
    q = hits = errors = messages = exec_tenths = 0
    role = "user"
    qtypes: dict[str, int] = {}
    lognorm, random_ = rng.lognormvariate, rng.random
    b = assets[1] if len(assets) > 1 else content.benchmark(assets[0])
    for i in range(n_events):
        if random_() < 0.12:
            text = rng.choice(content.message_variants_copy(assets[0], b, role))
            pieces.append((t, _message_piece(role, text)))
            role = "assistant" if role == "user" else "user"
            messages += 1
        else:
            text, tenths, hit, error = _query_piece(
                rng, rng.choice(assets), query_types[i], error_rate
            )
            pieces.append((t, text))
            q += 1
            qtypes[query_types[i]] = qtypes.get(query_types[i], 0) + 1
            hits += hit
            errors += error
            exec_tenths += tenths
        t += min(lognorm(2.9, 1.0), 1800.0)
    return pieces, (q, hits, errors, messages, 0, exec_tenths, 0, 0, 0, qtypes)


def _agent_events(rng, assets, n_events, error_rate):
    """Conversation turns: a prompt, tool calls with their results, then the answer."""
    pieces: list[tuple[float, Any]] = []
    t = rng.uniform(0.5, 5)
    q = hits = errors = messages = tools = exec_tenths = tok_in = tok_out = micro = 0
    qtypes: dict[str, int] = {}
    b = assets[1] if len(assets) > 1 else content.benchmark(assets[0])
    while len(pieces) < n_events:
        prompt = rng.choice(content.message_variants_copy(assets[0], b, "user"))
        pieces.append((t, _message_piece("user", prompt)))
        messages += 1
        t += rng.uniform(0.8, 3)
        for tool in rng.choices(_TOOLS, cat.TOOL_SHARES, k=rng.choices((1, 2, 3), (55, 30, 15))[0]):
            (in_lo, in_hi), (out_lo, out_hi), (d_lo, d_hi) = cat.TOOLS[tool]
            invocation = f"call_{rng.getrandbits(48):012x}"
            t_in, t_out = rng.randint(in_lo, in_hi), rng.randint(out_lo, out_hi)
            cost = t_in * cat.MICRO_USD_PER_TOKEN_IN + t_out * cat.MICRO_USD_PER_TOKEN_OUT
            duration = round(rng.uniform(d_lo, d_hi), 1)
            failed = rng.random() < error_rate
            error = rng.choice(cat.TOOL_ERRORS) if failed else ""
            pieces.append(
                (
                    t,
                    f"tool_call\t\t{{}}\t\t\\N\tf\t{error}\t\t\t{tool}\t{invocation}\t{duration}"
                    f"\t{t_in}\t{t_out}\t{cost // 1_000_000}.{cost % 1_000_000:06d}",
                )
            )
            tools += 1
            errors += failed
            tok_in += t_in
            tok_out += t_out
            micro += cost
            t += duration / 1000
            query_type = content.TOOL_QUERY_TYPE.get(tool)
            if query_type and not failed and rng.random() < 0.6:
                text, tenths, hit, _ = _query_piece(rng, rng.choice(assets), query_type, 0)
                pieces.append((t, text))
                q += 1
                qtypes[query_type] = qtypes.get(query_type, 0) + 1
                hits += hit
                exec_tenths += tenths
                t += 0.05
            result = "error: " + error if failed else content.tool_result(tool, assets[0])
            pieces.append((t, _message_piece("tool", result, tool, invocation)))
            messages += 1
            t += 0.2
        reply = rng.choice(content.message_variants_copy(assets[0], b, "assistant"))
        t += rng.uniform(1.5, 9)
        pieces.append((t, _message_piece("assistant", reply)))
        messages += 1
        t += min(rng.lognormvariate(3.6, 0.8), 1800.0)  # the user reads, then asks again
    return pieces, (q, hits, errors, messages, tools, exec_tenths, tok_in, tok_out, micro, qtypes)


def write_chunk(raw_connection, chunk: Chunk) -> None:
    """COPY one chunk's sessions, then its events (as timeline chunks), on a psycopg
    connection; then fold them into the daily rollups in the same transaction, as the archiver
    does."""
    from sessions_app.archive.timeline import convert_rows
    from sessions_app.rollups import fold_sessions

    with raw_connection.cursor() as cursor:
        with cursor.copy(SESSION_COPY) as copy:
            copy.write(chunk.session_text)
        if chunk.event_text:
            cursor.execute(EVENT_STAGE_DDL)
            with cursor.copy(EVENT_COPY) as copy:
                copy.write(chunk.event_text)
            cursor.execute(DAY_STAGE_DDL)
            with cursor.copy(f"COPY {DAY_STAGE} (id, archived_at) FROM STDIN") as copy:
                for line in chunk.session_text.splitlines():
                    values = line.split("\t", _ARCHIVED_AT + 1)
                    copy.write(f"{values[0]}\t{values[_ARCHIVED_AT]}\n")
            convert_rows(cursor, EVENT_STAGE, days=DAY_STAGE)
            # Inside a test's outer transaction nothing commits: empty the stages explicitly.
            cursor.execute(f"DELETE FROM {EVENT_STAGE}")  # noqa: S608 - constant
            cursor.execute(f"DELETE FROM {DAY_STAGE}")  # noqa: S608 - constant
        rows = [line.split("\t", _ARCHIVED_AT + 1) for line in chunk.session_text.splitlines()]
        ids = [values[0] for values in rows]
        # _ts's fixed UTC format sorts like the times it writes.
        stamps = [values[_ARCHIVED_AT] for values in rows]
        if stamps:
            between = (datetime.fromisoformat(min(stamps)), datetime.fromisoformat(max(stamps)))
            fold_sessions(ids, cursor=cursor, archived_between=between)
