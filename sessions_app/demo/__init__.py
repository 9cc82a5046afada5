"""Realistic demo data: archived sessions in bulk (COPY), live ones through the store.

`seed_demo(...)` is what `manage.py seed_demo` runs; the benchmark reuses `write_archived`.
"""

import logging
import multiprocessing
import os
import time
from datetime import UTC, datetime
from functools import partial

import psycopg
from django.db import connection, connections, transaction
from django.utils import timezone
from tqdm import tqdm

from sessions_app.archive.partitions import ensure_partitions
from sessions_app.demo.archived import DAY, ArchivePlan, generate_chunk, write_chunk
from sessions_app.jobs import SEED as SEED_JOB
from sessions_app.models import (
    DailyMetric,
    JobRun,
    Session,
    SessionEvent,
    TimelineChunk,
    UserDailyMetric,
)

__all__ = ["ArchivePlan", "DemoDataExists", "reset_demo_data", "seed_demo", "write_archived"]

logger = logging.getLogger(__name__)
# Below this many sessions one process is quicker than starting workers.
PARALLEL_THRESHOLD = 20_000


class DemoDataExists(Exception):
    """The rows this seed would write are already there (same --seed twice without --reset)."""


def default_workers(sessions: int) -> int:
    return 1 if sessions < PARALLEL_THRESHOLD else max(2, min(os.cpu_count() or 2, 4))


def _conninfo() -> dict:
    """Connection parameters for worker processes (plain psycopg, no Django objects)."""
    params = connection.get_connection_params()
    allowed = ("dbname", "user", "password", "host", "port", "sslmode", "options", "passfile")
    return {name: value for name, value in params.items() if name in allowed and value != ""}


_worker_connection: psycopg.Connection | None = None


def _worker_init(conninfo: dict) -> None:
    global _worker_connection
    _worker_connection = psycopg.connect(**conninfo)
    # Losing the last seconds of demo data in a server crash is fine; waiting on fsync is not.
    _worker_connection.execute("SET synchronous_commit = off")
    _worker_connection.commit()


def _worker_chunk(plan: ArchivePlan, index: int) -> tuple[int, int]:
    chunk = generate_chunk(plan, index)
    assert _worker_connection is not None  # opened by every worker process's initializer
    try:
        with _worker_connection.transaction():
            write_chunk(_worker_connection, chunk)
    except psycopg.errors.UniqueViolation as exc:
        raise DemoDataExists(_exists_message(plan)) from exc
    return chunk.sessions, chunk.events


def _exists_message(plan: ArchivePlan) -> str:
    return (
        f"sessions from seed {plan.seed} are already in the database; "
        "use --reset, or another --seed"
    )


def write_archived(plan: ArchivePlan, *, workers: int = 1, progress: bool = False) -> dict:
    """Generate and COPY the plan's sessions and events; {"sessions", "events", "seconds"}.

    With one worker it writes on Django's connection (inside any open transaction, as tests
    need); with more, each worker process generates and copies whole chunks on its own
    connection, one transaction per chunk.
    """
    started = time.monotonic()
    sessions = events = 0
    # Every archive day the plan can write: archive times fall in its window (archive_times).
    first = plan.until - plan.days * DAY
    ensure_partitions(
        [
            *(datetime.fromtimestamp(first + n * DAY, UTC) for n in range(plan.days)),
            datetime.fromtimestamp(plan.until, UTC),
        ]
    )
    bar = tqdm(total=plan.sessions, unit="session", disable=not progress, smoothing=0.1)
    try:
        if workers <= 1 or plan.chunk_count == 1:
            connection.ensure_connection()
            for index in range(plan.chunk_count):
                chunk = generate_chunk(plan, index)
                try:
                    with transaction.atomic():
                        write_chunk(connection.connection, chunk)
                except psycopg.errors.UniqueViolation as exc:
                    raise DemoDataExists(_exists_message(plan)) from exc
                sessions += chunk.sessions
                events += chunk.events
                bar.update(chunk.sessions)
        else:
            conninfo = _conninfo()
            connections.close_all()  # forked children must not share the parent's socket
            context = multiprocessing.get_context("fork")
            with context.Pool(workers, initializer=_worker_init, initargs=(conninfo,)) as pool:
                work = partial(_worker_chunk, plan)
                for chunk_sessions, chunk_events in pool.imap_unordered(
                    work, range(plan.chunk_count)
                ):
                    sessions += chunk_sessions
                    events += chunk_events
                    bar.update(chunk_sessions)
    finally:
        bar.close()
    return {"sessions": sessions, "events": events, "seconds": time.monotonic() - started}


def analyze_tables() -> None:
    """Refresh planner statistics after a bulk load, so the first page views get good plans."""
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Session._meta.db_table}")
        cursor.execute(f"ANALYZE {TimelineChunk._meta.db_table}")
        cursor.execute(f"ANALYZE {UserDailyMetric._meta.db_table}")


def reset_demo_data() -> dict:
    """Delete every live session (through the store) and every archived session and rollup."""
    deleted_live = 0
    try:
        from sessions_app.store import get_session_store

        store = get_session_store()
        for _ in range(10_000):  # bounded: each pass deletes what it lists
            page = store.list_live_sessions(limit=500)
            if not page:
                break
            for summary in page:
                deleted_live += store.delete_session(summary.id)
    except ImportError:  # pragma: no cover - the store ships with the app
        logger.warning("seed_demo --reset: no store, live sessions left in place")
    archived = Session.objects.count()
    tables = ", ".join(
        model._meta.db_table
        for model in (TimelineChunk, SessionEvent, Session, DailyMetric, UserDailyMetric)
    )  # timelines first: they reference sessions (SessionEvent: the old, empty table)
    with transaction.atomic(), connection.cursor() as cursor:
        # Deferred FK checks still pending in an enclosing transaction would block TRUNCATE.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # The day partitions stay (empty); retention drops them when their day expires.
        cursor.execute(f"TRUNCATE {tables}")
    return {"deleted_live": deleted_live, "deleted_archived": archived}


def compute_metrics_for_seeded_days() -> dict | None:
    """DailyMetric rows for every day that now has archived sessions; None without metrics."""
    try:
        from sessions_app.metrics import compute_daily_metrics
    except ImportError:
        logger.warning("sessions_app.metrics is not available: no daily metrics computed")
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(created_at), max(created_at) FROM sessions_app_session")
        first, last = cursor.fetchone()
    if first is None:
        return None
    tz = timezone.get_current_timezone()
    return compute_daily_metrics(first.astimezone(tz).date(), last.astimezone(tz).date())


def seed_demo(
    *,
    sessions: int,
    days: int = 30,
    live: int = 0,
    seed: int | None = None,
    reset: bool = False,
    until: datetime | None = None,
    workers: int | None = None,
    progress: bool = False,
    metrics: bool = True,
) -> dict:
    """Seed demo data and record a JobRun; returns the counts (also stored on the JobRun)."""
    if sessions < 0 or live < 0:
        raise ValueError("sessions and live: must be zero or more")
    if days < 1:
        raise ValueError("days: must be at least 1")
    started_at, clock = timezone.now(), time.monotonic()
    seed = int.from_bytes(os.urandom(4), "big") if seed is None else seed
    until = until or datetime.now(UTC).replace(second=0, microsecond=0)
    counts: dict = {"seed": seed, "days": days, "until": until.isoformat()}
    try:
        if reset:
            counts.update(reset_demo_data())
        plan = ArchivePlan(sessions=sessions, until=until.timestamp(), days=days, seed=seed)
        if sessions:
            written = write_archived(
                plan, workers=workers or default_workers(sessions), progress=progress
            )
            counts.update(
                archived_sessions=written["sessions"],
                archived_events=written["events"],
                archive_write_seconds=round(written["seconds"], 2),
            )
            analyze_tables()
        if live:
            from sessions_app.demo.live import seed_live_sessions

            counts.update(seed_live_sessions(live, seed=seed, user_count=plan.user_count))
        if metrics and sessions:
            result = compute_metrics_for_seeded_days()
            if result is not None:
                counts.update(metric_rows=result["rows"], metric_days=result["days"])
    except Exception as exc:
        _record_run(
            started_at, clock, counts, JobRun.Outcome.FAILED, f"{type(exc).__name__}: {exc}"
        )
        raise
    counts["seconds"] = round(time.monotonic() - clock, 2)
    _record_run(started_at, clock, counts, JobRun.Outcome.SUCCESS)
    return counts


def _record_run(started_at, clock, counts, outcome, error="") -> None:
    try:
        JobRun.objects.create(
            job=SEED_JOB,
            started_at=started_at,
            finished_at=timezone.now(),
            outcome=outcome,
            counts=counts,
            error=error[:2000],
            duration_ms=(time.monotonic() - clock) * 1000,
        )
    except Exception:  # the seed's own error matters more than its bookkeeping
        logger.exception("seed_demo: could not record its JobRun")
