"""Background-job throughput: archiving, retention deletes, daily metrics."""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import timedelta

from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from sessions_app.benchmark.core import Row, RunContext, SectionResult, Unavailable

# Issue 15: 1M sessions of 20 events a minute on this 2-core machine.
TARGET_ARCHIVE_PER_MIN = 1_000_000
# Issue 15 part 4: retention by partition, 10M sessions a minute with WAL in kB.
TARGET_RETENTION_PER_MIN = 10_000_000


def _populate_live(ctx: RunContext, sessions: int, events: int) -> float:
    """Live sessions with `events` events each (3 queries to 1 message); seconds it took."""
    from sessions_app.domain import QueryRecord
    from sessions_app.store import get_session_store

    store = get_session_store()
    started = time.monotonic()
    for i in range(sessions):
        session = store.create_session(
            assets=["NVDA", "AMD"],
            session_type="comparative" if i % 2 else "agent",
            user_id=f"{ctx.user_prefix}archive{i % 50}",
            tags=["bench"],
            purpose="archive throughput",
            metadata={"client_version": "2.4.1"},
        )
        store.update_context(session.id, "watchlist", ["NVDA", "AMD"])
        for j in range(events):
            if j % 4 == 3:
                store.add_message(session.id, role="assistant", content="NVDA leads on margins.")
            else:
                store.add_query(
                    session.id,
                    QueryRecord(
                        "fundamentals", {"symbol": "NVDA"}, "P/E 38.2", 212.5, j % 2 == 0, ""
                    ),
                )
    return time.monotonic() - started


def _archive_one_shard(now: float, shard: int) -> dict:
    """One writer process: archive_due_sessions on its shard (run in a forked child)."""
    from sessions_app.archive import archive_due_sessions

    return archive_due_sessions(now=now, shard=shard)


def _archive_in_parallel(now: float, writers: int) -> list[dict]:
    """One process per shard, as `writers` workers each holding one shard's lock would run;
    returns each one's counts. Forked: each child opens its own Postgres and Redis connections.
    """
    connections.close_all()  # no socket shared with the children
    with multiprocessing.get_context("fork").Pool(writers) as pool:
        return pool.starmap(_archive_one_shard, [(now, shard) for shard in range(writers)])


def _archive_row(name: str, archived: int, seconds: float, events: int, note: str = "") -> Row:
    per_minute = archived / seconds * 60 if seconds else 0.0
    return Row(
        name,
        unit="sessions/min",
        value=round(per_minute),
        samples=archived,
        target=f">= {TARGET_ARCHIVE_PER_MIN:,} sessions/min",
        passed=per_minute >= TARGET_ARCHIVE_PER_MIN,
        note=f"{archived:,} sessions, {archived * events:,} events in {seconds:.2f} s "
        f"({archived * events / seconds:,.0f} events/s){note}",
    )


def run_archive(ctx: RunContext, result: SectionResult) -> None:
    """Live sessions with ~20 events each, all made due, archived by archive_due_sessions: once
    by one writer over the configured shards in turn, once by one writer process per shard."""
    try:
        from sessions_app.archive import archive_due_sessions
        from sessions_app.store import keys
    except ImportError as exc:
        raise Unavailable(f"sessions_app.archive: {exc}") from exc
    config = ctx.config
    events = config.events_per_session
    populate = _populate_live(ctx, config.archive_sessions, events)
    # Every session is due once the clock passes the longest TTL; the archiver takes `now`.
    future = time.time() + 400 * 24 * 3600
    started = time.perf_counter()
    counts = archive_due_sessions(now=future)
    seconds = time.perf_counter() - started
    shards = keys.shard_count()
    result.rows.append(
        _archive_row(
            "archive_due_sessions",
            counts.get("archived", 0),
            seconds,
            events,
            f"; one writer, REDIS_SHARDS={shards}",
        )
    )
    # Parallel writers: the due index split over as many shards as the machine has cores.
    writers = max(2, min(os.cpu_count() or 2, 8))
    with override_settings(REDIS_SHARDS=writers):
        populate += _populate_live(ctx, config.archive_sessions, events)
        started = time.perf_counter()
        per_shard = _archive_in_parallel(future, writers)
        seconds = time.perf_counter() - started
    archived = sum(one.get("archived", 0) for one in per_shard)
    result.rows.append(
        _archive_row(
            f"archive_due_sessions, {writers} writers",
            archived,
            seconds,
            events,
            f"; one process per shard, REDIS_SHARDS={writers} (fork included)",
        )
    )
    result.setup["populate_seconds"] = round(populate, 2)
    result.setup.update(
        sessions=config.archive_sessions,
        events_per_session=events,
        counts=counts,
        parallel_counts=per_shard,
    )


def _wal_lsn() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        return cursor.fetchone()[0]


def _checkpoint() -> None:
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")


def _wal_kb(since: str) -> float:
    """WAL written since `since`, in kB: the whole cluster's, so concurrent writers add to it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", [since])
        return float(cursor.fetchone()[0]) / 1024


def run_retention(ctx: RunContext, result: SectionResult) -> None:
    """Retention in the running state: archived sessions spread over several past days. Half
    lie in days past the longest retention of any type, retired by the job's partition drop;
    the other half in the days just after, retired by the bounded (row-by-row, keyset
    batches) delete that shorter per-type retention uses. Time and WAL of each, same run."""
    try:
        from sessions_app.archive import partitions
        from sessions_app.archive.retention import delete_expired_rows
        from sessions_app.policies import all_effective_policies
    except ImportError as exc:
        raise Unavailable(f"sessions_app.archive: {exc}") from exc
    from sessions_app.demo import ArchivePlan, write_archived

    config = ctx.config
    now = timezone.now()
    longest = max(policy.retention_days for policy in all_effective_policies().values())
    horizon = now - timedelta(days=longest)
    # Two windows of 3 days: one ending a day before the horizon (its days are whole past
    # it), one just after it (kept by the longest retention).
    half = max(config.retention_sessions // 2, 1)
    written = {"sessions": 0, "events": 0, "seconds": 0.0}
    for n, until in enumerate((horizon - timedelta(days=1), horizon + timedelta(days=4))):
        plan = ArchivePlan(
            sessions=half,
            until=until.timestamp(),
            days=3,
            seed=int(ctx.run_id, 16) + 1 + n,
            user_prefix=ctx.user_prefix,
            events_per_session=config.events_per_session,
        )
        for key, value in write_archived(plan, workers=1 if config.quick else 2).items():
            written[key] += value
    result.setup["populate_seconds"] = round(written["seconds"], 2)
    with connection.cursor() as cursor:
        # Vacuumed as autovacuum leaves a day of inserts: the drop's count is index-only.
        cursor.execute("VACUUM (ANALYZE) sessions_app_session, sessions_app_timelinechunk")
    # By partition first (the row-by-row delete's dead rows would bring autovacuum, which a
    # DROP waits for): the job's drop of every day past the longest retention.
    _checkpoint()  # each measurement pays for its own full-page images
    lsn = _wal_lsn()
    started = time.perf_counter()
    dropped = partitions.drop_expired(longest, now)
    drop_seconds = time.perf_counter() - started
    drop_wal = _wal_kb(lsn)
    # Row by row: every type, up to the end of the second window (plus any older data).
    _checkpoint()
    lsn = _wal_lsn()
    started = time.perf_counter()
    rows = delete_expired_rows(
        dict.fromkeys(all_effective_policies(), horizon + timedelta(days=4, hours=12))
    )
    row_seconds = time.perf_counter() - started
    row_wal = _wal_kb(lsn)
    row_rate = rows["sessions"] / row_seconds * 60 if row_seconds else 0.0
    drop_rate = dropped["sessions"] / drop_seconds * 60 if drop_seconds else 0.0
    result.rows.append(
        Row(
            "retention by partition drop",
            unit="sessions/min",
            value=round(drop_rate),
            samples=dropped["sessions"],
            target=f">= {TARGET_RETENTION_PER_MIN:,} sessions/min, WAL in kB",
            passed=drop_rate >= TARGET_RETENTION_PER_MIN and drop_wal < 1024,
            note=f"{dropped['sessions']:,} sessions in {dropped['days']} days dropped in "
            f"{drop_seconds * 1000:.1f} ms, {drop_wal:,.0f} kB WAL (the cluster's); "
            f"{drop_rate / row_rate if row_rate else 0:,.1f}x the bounded delete's rate",
        )
    )
    result.rows.append(
        Row(
            "retention by bounded delete",
            unit="sessions/min",
            value=round(row_rate),
            samples=rows["sessions"],
            note=f"{rows['sessions']:,} sessions, {rows['events']:,} events in "
            f"{row_seconds:.2f} s, {rows['batches']} batches, {row_wal / 1024:,.1f} MB WAL "
            "(used for a type whose retention is shorter than the longest)",
        )
    )
    result.setup.update(
        sessions=written["sessions"], events=written["events"], row=rows, dropped=dropped
    )


def run_metrics(ctx: RunContext, result: SectionResult) -> None:
    """compute_daily_metrics over the last days that hold archived sessions; time per day."""
    try:
        from sessions_app.metrics import compute_daily_metrics, day_bounds
    except ImportError as exc:
        raise Unavailable(f"sessions_app.metrics: {exc}") from exc
    config = ctx.config
    today = timezone.localdate()
    start = today - timedelta(days=config.metrics_days - 1)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM sessions_app_session WHERE created_at >= %s AND created_at < %s",
            list(day_bounds(start, today)),
        )
        sessions = cursor.fetchone()[0]
    started = time.perf_counter()
    counts = compute_daily_metrics(start, today)
    seconds = time.perf_counter() - started
    per_day = seconds / config.metrics_days
    result.rows.append(
        Row(
            "compute_daily_metrics, per day",
            unit="s/day",
            value=round(per_day, 3),
            samples=config.metrics_days,
            note=f"{config.metrics_days} days, {sessions:,} sessions "
            f"(~{sessions // max(config.metrics_days, 1):,}/day) in {seconds:.2f} s; "
            f"{counts.get('rows', 0)} rows",
        )
    )
    result.setup.update(days=config.metrics_days, sessions=sessions)
