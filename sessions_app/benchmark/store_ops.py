"""The floor (raw Redis PING, Postgres SELECT 1) and the store's operations, p50/p95."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator

from django.db import connection

from sessions_app.benchmark.core import (
    LatencyRow,
    Row,
    RunContext,
    SectionResult,
    Unavailable,
    percentile,
    time_calls,
    time_interleaved,
)

TARGET_WRITE = 2.5  # create and add_query p50 within 2.5x a Redis round trip
TARGET_GET = 2.0  # get (live) within 2x
TARGET_FLAT = 1.25  # add_query at 1000 prior queries at most 25 % slower than at 1
TARGET_LIST_MS = 2.0
TARGET_ASYNC = 1.3  # the async store's p50 within 1.3x the sync store's, same run


@contextlib.contextmanager
def frozen_policies() -> Iterator[None]:
    """Serve the policies loaded now to both front-ends for the section, so a cache refresh
    never puts the sync store's ORM call on the event loop the async rows run in."""
    from sessions_app import policies

    loaded = policies.all_effective_policies()

    async def aloaded():
        return loaded

    saved = policies.all_effective_policies, policies.aall_effective_policies
    policies.all_effective_policies, policies.aall_effective_policies = (lambda: loaded), aloaded
    try:
        yield
    finally:
        policies.all_effective_policies, policies.aall_effective_policies = saved


def async_vs_sync_rows(ctx: RunContext, store, query) -> list[Row]:
    """create, add_query (get + add_query + delta update_session) and get, each timed on the
    sync store and the async store in turn, in one event loop, with interleaved PINGs."""
    import asyncio

    from sessions_app.store.aio import AsyncSessionStore

    n, warm = ctx.config.iterations, ctx.config.warmup
    user = f"{ctx.user_prefix}async"

    async def measure():
        astore = AsyncSessionStore()
        client = store.redis
        clock = time.perf_counter_ns
        names = ("create", "update", "get")
        samples: dict[tuple[str, str], list[float]] = {
            (name, kind): [] for name in names for kind in ("sync", "async")
        }
        floor: list[float] = []
        ids: dict[str, list[str]] = {"sync": [], "async": []}

        def rmw_sync(session_id):
            session = store.get_session(session_id)
            session.add_query(query)
            store.update_session(session_id, session)

        async def rmw_async(session_id):
            session = await astore.get_session(session_id)
            session.add_query(query)
            await astore.update_session(session_id, session)

        for i in range(warm + n):
            timed = i >= warm
            for name in names:
                for kind in ("sync", "async"):
                    start = clock()
                    if name == "create" and kind == "sync":
                        ids[kind].append(store.create_session(user_id=user, assets=["AAPL"]).id)
                    elif name == "create":
                        session = await astore.create_session(user_id=user, assets=["AAPL"])
                        ids[kind].append(session.id)
                    elif name == "update" and kind == "sync":
                        rmw_sync(ids[kind][i])
                    elif name == "update":
                        await rmw_async(ids[kind][i])
                    elif kind == "sync":
                        store.get_session(ids[kind][i])
                    else:
                        await astore.get_session(ids[kind][i])
                    if timed:
                        samples[name, kind].append((clock() - start) / 1e6)
            start = clock()
            client.ping()
            if timed:
                floor.append((clock() - start) / 1e6)
        await astore.close()
        return samples, floor

    with frozen_policies():
        samples, floor = asyncio.run(measure())
    labels = {
        "create": "create_session",
        "update": "add_query (get + delta update_session)",
        "get": "get_session (live)",
    }
    rows: list[Row] = []
    for name, label in labels.items():
        sync_row = _row(f"{label}, sync store", samples[name, "sync"], floor)
        async_row = _row(f"{label}, async store", samples[name, "async"], floor)
        ratio = async_row.p50 / sync_row.p50 if sync_row.p50 else None
        async_row.note = f"{ratio:.2f}x the sync p50" if ratio else ""
        async_row.target = f"p50 <= {TARGET_ASYNC}x the sync store's"
        async_row.passed = ratio is not None and ratio <= TARGET_ASYNC
        rows += [sync_row, async_row]
    return rows


# Issue 15: a 1,000-event archived timeline read whole in at most this (half of FIML's time).
TARGET_TIMELINE_MS = 4.5


def run_floor(ctx: RunContext, result: SectionResult) -> None:
    """What a single round trip costs on this machine, measured now."""
    from sessions_app.redis_client import get_redis

    config = ctx.config
    client = get_redis()
    redis_ms = time_calls(lambda i: client.ping(), config.iterations, config.warmup)
    with connection.cursor() as cursor:

        def select_one(i):
            cursor.execute("SELECT 1")
            cursor.fetchone()

        postgres_ms = time_calls(select_one, config.iterations, config.warmup)
    redis_row = Row.latency("Redis PING (redis-py client)", redis_ms, ratio=1.0)
    postgres_row = Row.latency("Postgres SELECT 1 (Django cursor)", postgres_ms)
    ctx.redis_floor_ms, ctx.postgres_floor_ms = redis_row.p50, postgres_row.p50
    postgres_row.ratio = ctx.ratio(postgres_row.p50)
    result.rows += [redis_row, postgres_row]


@contextlib.contextmanager
def lifted_query_limit(store_module) -> Iterator[None]:
    """Lift the per-session query limit in this process only, so sessions can hold the 1000+
    queries the flatness row needs (the default limit is 1000). The store still passes the
    limit to its script and the script still checks it on every call."""
    from sessions_app import policies

    def lift(policy):
        return dataclasses.replace(policy, max_queries_per_session=10**9)

    one, every = policies.get_effective_policy, policies.all_effective_policies
    replacements = {
        "get_effective_policy": lambda session_type: lift(one(session_type)),
        "all_effective_policies": lambda: {name: lift(p) for name, p in every().items()},
    }
    saved = {}
    for module in (store_module, policies):
        for name, replacement in replacements.items():
            if hasattr(module, name):
                saved[module, name] = getattr(module, name)
                setattr(module, name, replacement)
    try:
        yield
    finally:
        for (module, name), original in saved.items():
            setattr(module, name, original)


def run_store(ctx: RunContext, result: SectionResult) -> None:
    """Each store operation timed call by call on sessions under the section's own key prefix.

    Every operation is timed interleaved with Redis PINGs (ping, op, ping, op, ...), and its
    ratio is taken against those PINGs: on a shared machine the floor drifts with the load,
    and interleaving keeps each ratio a like-for-like comparison.
    """
    try:
        from sessions_app import store as store_module
        from sessions_app.domain import QueryRecord
        from sessions_app.redis_client import get_redis
        from sessions_app.store import get_session_store
    except ImportError as exc:
        raise Unavailable(f"sessions_app.store: {exc}") from exc
    config = ctx.config
    store = get_session_store()
    client = get_redis()
    n, warm = config.iterations, config.warmup
    query = QueryRecord(
        query_type="price",
        parameters={"symbol": "AAPL", "interval": "1d"},
        result_summary="AAPL 189.42 USD (+1.3% 1d)",
        execution_time_ms=84.2,
        cache_hit=True,
    )

    def ping(i):
        client.ping()

    def create(i):
        return store.create_session(
            assets=["AAPL", "MSFT"],
            session_type="equity",
            user_id=f"{ctx.user_prefix}create",
            tags=["bench"],
            purpose="benchmark session",
            source="bench",
        )

    ids = []
    floor, samples = time_interleaved([ping, lambda i: ids.append(create(i).id)], n, warm)
    rows: list[Row] = [_row("create_session", samples, floor, TARGET_WRITE)]
    sessions = ids[warm:]  # a fresh session for each following call

    # add_query at exactly 1 prior query (a fresh session each call) interleaved with
    # add_query on sessions already holding `prior_queries` (ten of them, so each grows by
    # only n/10 during the run).
    for session_id in sessions:
        store.add_query(session_id, query)
    full = [create(i).id for i in range(10)]
    with lifted_query_limit(store_module):
        for session_id in full:
            for _ in range(config.prior_queries):
                store.add_query(session_id, query)
        floor, one_prior, deep = time_interleaved(
            [
                ping,
                lambda i: store.add_query(sessions[i], query),
                lambda i: store.add_query(full[i % len(full)], query),
            ],
            n,
        )
    one_row = _row("add_query (1 prior query)", one_prior, floor, TARGET_WRITE)
    rows.append(one_row)
    deep_row = _row(f"add_query ({config.prior_queries} prior queries)", deep, floor, TARGET_WRITE)
    flat = deep_row.p50 / one_row.p50
    deep_row.note = f"{flat:.2f}x the 1-prior p50"
    deep_row.target += f"; flat (<= {TARGET_FLAT}x the 1-prior p50)"
    deep_row.passed = bool(deep_row.passed) and flat <= TARGET_FLAT
    rows.append(deep_row)

    context_value = {"timeframe": "1d", "watchlist": ["AAPL", "MSFT"], "benchmark": "SPY"}
    floor, samples = time_interleaved(
        [ping, lambda i: store.update_context(sessions[i], f"k{i % 8}", context_value)], n
    )
    rows.append(_row("update_context", samples, floor))

    # get: a typical live session (20 events and 5 context keys), recent events included.
    typical = []
    for i in range(20):
        session_id = create(i).id
        for j in range(config.events_per_session):
            store.add_query(session_id, query)
            if j < 5:
                store.update_context(session_id, f"k{j}", context_value)
        typical.append(session_id)
    floor, samples = time_interleaved([ping, lambda i: store.get_session(typical[i % 20])], n, warm)
    rows.append(_row("get_session (live, 20 events)", samples, floor, TARGET_GET))

    archived_id = _archived_session(ctx, config.archived_events)
    with connection.cursor() as cursor:

        def select_one(i):
            cursor.execute("SELECT 1")
            cursor.fetchone()

        floor, pg_floor, samples = time_interleaved(
            [ping, select_one, lambda i: store.get_session(archived_id)], max(n // 3, 1), warm
        )
    row = _row(f"get_session (archived, {config.archived_events} events)", samples, floor)
    row.note = f"{row.p50 / _p50(pg_floor):.1f}x Postgres SELECT 1 (interleaved)"
    rows.append(row)

    # The whole archived timeline, as the detail page's export and get_timeline pages read it.
    from sessions_app.archive import timeline

    with connection.cursor() as cursor:

        def select_one_again(i):
            cursor.execute("SELECT 1")
            cursor.fetchone()

        floor, pg_floor, samples = time_interleaved(
            [ping, select_one_again, lambda i: timeline.read_all(archived_id)],
            max(n // 3, 1),
            warm,
        )
    row = _row(f"full archived timeline ({config.archived_events} events)", samples, floor)
    row.target = f"p50 <= {TARGET_TIMELINE_MS} ms"
    row.passed = row.p50 <= TARGET_TIMELINE_MS
    row.note = f"{row.p50 / _p50(pg_floor):.1f}x Postgres SELECT 1 (interleaved)"
    rows.append(row)

    heavy_user = f"{ctx.user_prefix}heavy"
    started = time.monotonic()
    for _ in range(config.user_sessions):
        store.create_session(assets=["SPY"], session_type="portfolio", user_id=heavy_user)
    result.setup["user_sessions_seconds"] = round(time.monotonic() - started, 2)
    floor, samples = time_interleaved(
        [ping, lambda i: store.list_user_sessions(heavy_user, limit=50)], n, warm
    )
    row = _row(
        f"list_user_sessions (limit 50, {config.user_sessions:,} live sessions)", samples, floor
    )
    row.target = f"p50 < {TARGET_LIST_MS} ms"
    row.passed = row.p50 < TARGET_LIST_MS
    rows.append(row)
    rows += async_vs_sync_rows(ctx, store, query)
    result.rows += rows
    result.setup.update(
        iterations=n,
        warmup=warm,
        prior_queries=config.prior_queries,
        user_sessions=config.user_sessions,
    )


def _p50(samples: list[float]) -> float:
    return percentile(samples, 50)


def _row(
    name: str, samples: list[float], floor: list[float], target: float | None = None
) -> LatencyRow:
    """A latency row with its ratio to the interleaved PINGs; `target`: max ratio at p50."""
    row = Row.latency(name, samples)
    floor_p50 = _p50(floor)
    row.floor_p50 = round(floor_p50, 4)
    row.ratio = round(row.p50 / floor_p50, 2) if floor_p50 else None
    if target is not None:
        row.target = f"p50 <= {target}x Redis PING"
        row.passed = row.ratio is not None and row.ratio <= target
    return row


def _archived_session(ctx: RunContext, events: int):
    """One archived session with `events` events (demo generator, COPY), deleted at cleanup."""
    from django.db import transaction

    from sessions_app.demo.archived import ArchivePlan, generate_chunk, write_chunk

    plan = ArchivePlan(
        sessions=1,
        until=time.time(),
        days=1,
        seed=int(ctx.run_id, 16),
        user_prefix=ctx.user_prefix,
        events_per_session=events,
    )
    chunk = generate_chunk(plan, 0)
    connection.ensure_connection()
    with transaction.atomic():
        write_chunk(connection.connection, chunk)
    return chunk.session_text.split("\t", 1)[0]
