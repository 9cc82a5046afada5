"""Moving sessions out of Redis into Postgres, and deleting archived sessions past retention.

Archiving one batch of sessions:
Sessions live in REDIS_SHARDS shards (store/keys.py); a run archives one shard, or each in
turn. Per shard:
1. claim (two Lua calls: candidates from the indexes, then the claim given their keys): due
   sessions (due index score <= now) and idle active sessions are
   made non-active (active -> expired / abandoned, so the store rejects later writes) and their
   due score is pushed to now + CLAIM_LEASE_SECONDS, so a concurrent run does not take them and
   a crashed run's sessions come back once the lease passes;
2. snapshot (one pipeline): meta, timeline, context, intermediate results, query-type counts;
3. write (one Postgres transaction): COPY the sessions into a temp table, upsert them by id,
   COPY the timeline chunks (one JSON array text per up to 500 events) of those it inserted
   straight into the chunk table, fold those into the rollups; commit;
4. delete (one MULTI): the session's keys and index entries.
A crash between 3 and 4 leaves sessions that the next run upserts again (no duplicates) and
deletes. Postgres down: step 3 fails, Redis keeps the sessions, a later run retries.
"""

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django.db.models import F
from django.utils import timezone

from sessions_app import jobs, validation
from sessions_app.archive import scripts, sql, timeline
from sessions_app.archive.partitions import ensure_partitions
from sessions_app.archive.retention import (
    DELETE_BATCH_SIZE,
    delete_archived_sessions,
    delete_old_archived_sessions,
    retention_cutoffs,
)
from sessions_app.archive.tombstones import lock_for_archive
from sessions_app.models import QuarantinedSession, SessionType
from sessions_app.policies import all_effective_policies
from sessions_app.redis_client import get_redis
from sessions_app.rollups import fold_sessions
from sessions_app.store import keys as store_keys
from sessions_app.store.sync import run_reads

__all__ = [
    "CLAIM_LEASE_SECONDS",
    "DELETE_BATCH_SIZE",
    "archive_due_sessions",
    "archive_session",
    "delete_archived_sessions",
    "delete_old_archived_sessions",
    "retention_cutoffs",
]

logger = logging.getLogger(__name__)

# How long a claimed session is reserved for the run that claimed it. Far longer than a batch
# takes; after it a crashed run's sessions are due again.
CLAIM_LEASE_SECONDS = 300
# Idle candidates a claim call may look at without claiming them (sessions idle past the
# shortest idle timeout but not their own type's); bounds each Lua call's run time.
IDLE_SCAN_LIMIT = 5000
# Sessions per snapshot script call: one call blocks Redis for well under a millisecond.
SNAPSHOT_CHUNK = 250


@lru_cache(maxsize=4)
def _scripts(client) -> dict:
    return {
        name: client.register_script(source)
        for name, source in (
            ("claim_candidates", scripts.CLAIM_CANDIDATES),
            ("claim", scripts.CLAIM),
            ("freeze", scripts.FREEZE),
            ("snapshot", scripts.SNAPSHOT),
        )
    }


def _epoch(now: float | datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return now.timestamp()
    return float(now)


# ---- snapshot and write ---------------------------------------------------------------------


def _json_object(pairs: list[str]) -> str:
    """A JSON object from a Redis hash's [key, JSON text, ...], without parsing the values."""
    if not pairs:
        return "{}"
    dumps = json.dumps
    return (
        "{"
        + ",".join(f"{dumps(k)}:{v}" for k, v in zip(pairs[::2], pairs[1::2], strict=True))
        + "}"
    )


def _snapshot(client, session_ids: list[str]) -> list[tuple[str, list, list, list, list, list]]:
    """(id, meta values, events, context pairs, result pairs, query-type count pairs) of each
    session still in Redis.

    One round trip: a pipeline of snapshot script calls of SNAPSHOT_CHUNK sessions of one
    shard each (the ids are regrouped by shard).
    """
    script = _scripts(client)["snapshot"]
    by_shard = defaultdict(list)
    for session_id in session_ids:
        by_shard[store_keys.shard_of(session_id)].append(session_id)
    session_ids = [session_id for group in by_shard.values() for session_id in group]
    calls: list[tuple[Any, list[str], list[Any]]] = [
        (
            script,
            [
                name
                for session_id in group[start : start + SNAPSHOT_CHUNK]
                for name in store_keys.session_keys(session_id)[:4]
            ],
            [f"{timezone.now().timestamp():.6f}"],  # the archive time, stamped once
        )
        for group in by_shard.values()
        for start in range(0, len(group), SNAPSHOT_CHUNK)
    ]
    replies = [entry for chunk in run_reads(client, calls) for entry in chunk]
    return [
        (session_id, meta, events, ctx, ir, types)
        for session_id, (meta, events, ctx, ir, types) in zip(session_ids, replies, strict=True)
        # No status: gone already (another run, or end_session, archived it meanwhile).
        if meta[0] is not None
    ]


_QUERY_COUNT = scripts.META_FIELDS.index("query_count")


def _query_type_counts(meta: list, events: list[str], types: list[str]) -> str:
    """The session's query-type counts as a JSON object's text.

    From the live store's per-type counters when they add up to its query count (every session
    written since they exist); else (an older session) counted from its events, as the
    archive's SQL did: each query event by its query type, `other` when it has none.
    """
    counts = [int(count) for count in types[1::2]]
    pairs: Iterable[tuple[str, int]]
    if sum(counts) == int(float(meta[_QUERY_COUNT] or 0)):
        pairs = zip(types[::2], counts, strict=True)
    else:
        tally: Counter[str] = Counter()
        for text in events:
            event = timeline.decode(text)
            if event.get("kind") == "query":
                name = event.get("query_type")
                if name is None or name == "":
                    name = "other"
                tally[name if isinstance(name, str) else json.dumps(name)] += 1
        pairs = tally.items()
    return "{" + ",".join(f"{json.dumps(name)}:{n}" for name, n in pairs) + "}"


def _sanitize(text: str | None) -> str | None:
    # Postgres jsonb refuses the NUL escape; only used when a batch failed on bad data.
    return text.replace("\\u0000", "\\ufffd") if text and "\\u0000" in text else text


def _copy_text(value: str) -> str:
    """`value` escaped for COPY's text format (backslash, and the row/column separators)."""
    return (
        value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )


def _archive_time(meta: list, default: datetime) -> datetime:
    """The archive time the snapshot stamped on the session (the same on every re-run); the
    run's own time for a snapshot without one."""
    stamp = meta[scripts.ARCHIVE_TIME]
    if not stamp:
        return default
    return datetime.fromtimestamp(float(stamp), UTC)


def _write(snapshots: list, archived_at: datetime, clean=None) -> set[str]:
    """Upsert the sessions and their timelines in one transaction (committed on return).

    Sessions deleted meanwhile (a tombstone) are skipped; returns their ids.
    """
    times = {snapshot[0]: _archive_time(snapshot[1], archived_at) for snapshot in snapshots}
    # Before the transaction: creating a day's partition locks the tables only briefly.
    ensure_partitions(times.values())
    with transaction.atomic(), connection.cursor() as cursor, connection.wrap_database_errors:
        raw = cursor.cursor  # psycopg's own cursor, for COPY
        # Fenced: a run whose lock another run took over (a stalled worker) writes nothing.
        jobs.assert_lease(raw)
        deleted = lock_for_archive(raw, [snapshot[0] for snapshot in snapshots])
        if deleted:
            snapshots = [snapshot for snapshot in snapshots if snapshot[0] not in deleted]
            if not snapshots:
                return deleted
        raw.execute(sql.STAGE_DDL)
        with raw.copy(sql.COPY_SESSIONS) as copy:
            for session_id, meta, events, ctx, ir, types in snapshots:
                row = (
                    session_id,
                    *meta,
                    _json_object(ctx),
                    _json_object(ir),
                    _query_type_counts(meta, events, types),
                    times[session_id],
                )
                if clean:
                    row = tuple(clean(v) if isinstance(v, str) else v for v in row)
                copy.write_row(row)
        raw.execute(sql.ARCHIVE_BATCH)
        inserted = [row[0] for row in raw.fetchall()]
        fresh = {str(session_id) for session_id in inserted}
        with raw.copy(sql.COPY_TIMELINE) as copy:
            # Preformatted lines, one per chunk: the events' JSON texts joined, never parsed.
            escape, texts = _copy_text, timeline.chunk_texts
            for session_id, _, events, _, _, _ in snapshots:
                if events and session_id in fresh:
                    head, day = session_id + "\t", "\t" + times[session_id].isoformat()
                    copy.write(
                        "".join(
                            f"{head}{n}\t{escape(clean(text) if clean else text)}{day}\n"
                            for n, text in enumerate(texts(events))
                        )
                    )
        # Same transaction: the rollups count a session exactly when it commits.
        days = [times[str(session_id)] for session_id in inserted]
        if days:
            fold_sessions(inserted, cursor=raw, archived_between=(min(days), max(days)))
    return deleted


def _forget(client, snapshots: list) -> None:
    """Delete archived sessions' keys and index entries: one MULTI per shard."""
    by_shard = defaultdict(list)
    for snapshot in snapshots:
        by_shard[store_keys.shard_of(snapshot[0])].append(snapshot)
    for shard, group in by_shard.items():
        ids = [snapshot[0] for snapshot in group]
        by_user, by_type = defaultdict(list), defaultdict(list)
        doomed: list[str] = []
        for session_id, meta, *_ in group:
            by_user[meta[scripts.USER_ID] or ""].append(session_id)
            by_type[meta[scripts.SESSION_TYPE] or ""].append(session_id)
            doomed += store_keys.session_keys(session_id)
        pipe = client.pipeline(transaction=True)
        pipe.unlink(*doomed)  # memory is freed off Redis' main thread
        pipe.zrem(store_keys.due(shard), *ids)
        pipe.zrem(store_keys.activity(shard), *ids)
        for user_id, members in by_user.items():
            pipe.zrem(store_keys.user(shard, user_id), *members)
        for session_type, members in by_type.items():
            pipe.zrem(store_keys.session_type(shard, session_type), *members)
        pipe.execute()


def _is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError | InterfaceError)


def _write_isolating(snapshots: list, archived_at: datetime) -> tuple[list, list, set[str]]:
    """Write a batch; when bad data fails it, bisect to isolate the failing sessions.

    Returns (written snapshots, [(snapshot, database error)], ids skipped for a tombstone).
    One bad session among n costs about 2 * log2(n) smaller writes, not n single ones.
    Raises if Postgres is down.
    """
    try:
        deleted = _write(snapshots, archived_at)
        return [s for s in snapshots if s[0] not in deleted], [], deleted
    except (DataError, IntegrityError) as exc:
        # Only data the database refuses is isolated; any other error (outage, a bug in our
        # SQL) propagates and the batch stays in Redis for a later run.
        if len(snapshots) > 1:
            middle = len(snapshots) // 2
            w1, f1, d1 = _write_isolating(snapshots[:middle], archived_at)
            w2, f2, d2 = _write_isolating(snapshots[middle:], archived_at)
            return w1 + w2, f1 + f2, d1 | d2
        error = exc
    try:  # one session: a NUL escape that jsonb refuses is the one flaw we can clean
        deleted = _write(snapshots, archived_at, clean=_sanitize)
        return [s for s in snapshots if s[0] not in deleted], [], deleted
    except (DataError, IntegrityError):
        logger.error("cannot archive session %s: %s (quarantined)", snapshots[0][0], error)
        return [], [(snapshots[0], f"{type(error).__name__}: {error}")], set()


def _quarantine(failures: list, now: datetime) -> None:
    """Keep sessions that cannot be archived, with their snapshot and the database's error."""
    for (session_id, meta, events, ctx, ir, _), error in failures:
        snapshot = json.dumps(
            {
                "meta": dict(zip(scripts.META_FIELDS, meta, strict=True)),
                "events": events,
                "context": dict(zip(ctx[::2], ctx[1::2], strict=True)),
                "results": dict(zip(ir[::2], ir[1::2], strict=True)),
            }
        )  # ensure_ascii: a NUL stays an escape, which a text column takes
        record, created = QuarantinedSession.objects.get_or_create(
            session_id=session_id,
            defaults={
                "user_id": (meta[scripts.USER_ID] or "")[:128],
                "session_type": (meta[scripts.SESSION_TYPE] or "")[:16],
                "snapshot": snapshot,
                "error": error.replace("\x00", "")[:4000],
                "quarantined_at": now,
            },
        )
        if not created:
            QuarantinedSession.objects.filter(pk=record.pk).update(
                snapshot=snapshot,
                error=error.replace("\x00", "")[:4000],
                quarantined_at=now,
                attempts=F("attempts") + 1,
            )


def _archive_snapshots(client, snapshots: list, archived_at: datetime) -> tuple[list, list]:
    """Write then forget; returns (archived, quarantined) snapshots. Raises if Postgres is down.

    A session that cannot be written goes to the quarantine table and leaves Redis: it is
    neither retried forever nor lost when its keys expire. One deleted meanwhile is dropped.
    """
    written, failures, deleted = _write_isolating(snapshots, archived_at)
    if failures:
        _quarantine(failures, archived_at)
    gone = written + [failure[0] for failure in failures]
    gone += [snapshot for snapshot in snapshots if snapshot[0] in deleted]
    _forget(client, gone)
    return written, [failure[0] for failure in failures]


# ---- public services ------------------------------------------------------------------------


def archive_session(session_id) -> bool:
    """Archive one live session now (still active -> expired); False if it is not in Redis.

    Raises DatabaseError when Postgres is unavailable; the session then stays in Redis, due.
    """
    session_id = validation.session_id(session_id)
    client = get_redis()
    shard = store_keys.shard_of(session_id)
    status = _scripts(client)["freeze"](
        keys=[
            store_keys.meta(session_id),
            store_keys.due(shard),
            store_keys.activity(shard),
            *[store_keys.session_type(shard, name) for name in SessionType.values],
        ],
        args=[session_id],
    )
    if not status:
        return False
    snapshots = _snapshot(client, [session_id])
    if not snapshots:
        return False
    archived, _ = _archive_snapshots(client, snapshots, timezone.now())
    return bool(archived)


def _idle_cutoffs(now: float) -> list[str]:
    """[type, idle cutoff, ...]: active sessions of that type last active before it are idle."""
    cutoffs = []
    for session_type, policy in all_effective_policies().items():
        cutoffs += [session_type, f"{now - policy.idle_timeout_minutes * 60:.6f}"]
    return cutoffs


def _claim(
    client,
    shard: int,
    now: float,
    batch_size: int,
    idle_offset: int,
    cutoffs: list[str] | None = None,
) -> tuple[int, bool, list[tuple[str, str]]]:
    """Claim up to batch_size sessions of one shard: (next idle offset, idle scan done,
    [(id, outcome)]). Two calls: the candidates, then the claim given their keys (which checks
    each again, so a concurrent run never claims the same session)."""
    cutoffs = _idle_cutoffs(now) if cutoffs is None else cutoffs
    run = _scripts(client)
    due, activity = store_keys.due(shard), store_keys.activity(shard)
    latest = max((float(c) for c in cutoffs[1::2]), default=None)
    due_ids, idle_ids, exhausted = run["claim_candidates"](
        keys=[due, activity],
        args=[
            f"{now:.6f}",
            batch_size,
            "" if latest is None else f"{latest:.6f}",
            idle_offset,
            min(IDLE_SCAN_LIMIT, batch_size),
        ],
    )
    due_set = set(due_ids)
    room = max(batch_size - len(due_ids), 0)
    idle_ids = [i for i in idle_ids if i not in due_set]
    if len(idle_ids) > room:  # the rest waits for the next call
        idle_ids, exhausted = idle_ids[:room], 0
    candidates = [(i, "d") for i in due_ids] + [(i, "i") for i in idle_ids]
    if not candidates:
        return idle_offset, bool(int(exhausted)), []
    type_indexes = [store_keys.session_type(shard, name) for name in cutoffs[0::2]]
    reply = run["claim"](
        keys=[due, activity, *type_indexes, *[store_keys.meta(i) for i, _ in candidates]],
        args=[
            f"{now:.6f}",
            f"{now + CLAIM_LEASE_SECONDS:.6f}",
            len(type_indexes),
            *cutoffs,
            *[item for pair in candidates for item in pair],
        ],
    )
    pairs = list(zip(reply[1::2], reply[2::2], strict=True))
    return idle_offset + int(reply[0]), bool(int(exhausted)), pairs


@dataclass
class _Batch:
    outcomes: dict[str, str]  # claimed session id -> expired | abandoned | ended
    missing: int
    snapshots: list
    idle_offset: int
    last: bool  # nothing more was due when it was claimed


def _next_batch(
    client, shard: int, now: float, batch_size: int, idle_offset: int, cutoffs
) -> _Batch:
    """Claim a batch and snapshot it: Redis only, so it can run beside the Postgres write."""
    idle_offset, idle_exhausted, claimed = _claim(
        client, shard, now, batch_size, idle_offset, cutoffs
    )
    outcomes = {session_id: outcome for session_id, outcome in claimed if outcome != "missing"}
    return _Batch(
        outcomes=outcomes,
        missing=len(claimed) - len(outcomes),
        snapshots=_snapshot(client, list(outcomes)) if outcomes else [],
        idle_offset=idle_offset,
        last=len(claimed) < batch_size and idle_exhausted,
    )


def archive_due_sessions(
    now: float | datetime | None = None, batch_size: int = 1000, shard: int | None = None
) -> dict:
    """Archive every due (expired or ended) and idle session of one shard, or of every shard
    in turn when `shard` is None; returns what it did.

    Counts: archived, expired, abandoned, ended (of those archived), missing (index entries
    whose keys were already gone), failed (could not be written: moved to the quarantine
    table; the job run then reports failure), deleted (deleted while being archived), batches.
    """
    if batch_size < 1:
        raise ValueError("batch_size: must be at least 1")
    if shard is not None and shard not in store_keys.shards():
        raise ValueError(f"shard: must be between 0 and {store_keys.shard_count() - 1}")
    now = _epoch(now)
    client = get_redis()
    cutoffs = _idle_cutoffs(now)
    counts = dict.fromkeys(
        ("archived", "expired", "abandoned", "ended", "missing", "failed", "deleted", "batches"),
        0,
    )
    for one in store_keys.shards() if shard is None else [shard]:
        _archive_shard(client, one, now, batch_size, cutoffs, counts)
    if counts["archived"] or counts["missing"]:
        logger.info("archived sessions: %s", counts)
    return counts


def _archive_shard(client, shard: int, now: float, batch_size: int, cutoffs, counts) -> None:
    """archive_due_sessions for one shard, adding to `counts`."""
    # One helper thread claims and snapshots batch N+1 in Redis while this thread writes batch
    # N to Postgres; it never touches the database, so the write stays on this connection.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-prefetch") as prefetch:
        pending: Future[_Batch] | None = prefetch.submit(
            _next_batch, client, shard, now, batch_size, 0, cutoffs
        )
        while pending is not None:
            batch = pending.result()
            pending = None
            if not batch.last:
                args = (client, shard, now, batch_size, batch.idle_offset, cutoffs)
                pending = prefetch.submit(_next_batch, *args)
            counts["missing"] += batch.missing
            if not batch.outcomes:
                continue
            counts["batches"] += 1
            try:
                archived, failed = _archive_snapshots(client, batch.snapshots, timezone.now())
            except DatabaseError:
                # Postgres down: make the claimed sessions due again so the next run retries
                # them at once instead of after the lease.
                held = list(batch.outcomes)
                if pending is not None:
                    held += list(pending.result().outcomes)
                client.zadd(store_keys.due(shard), dict.fromkeys(held, now))
                raise
            counts["archived"] += len(archived)
            counts["failed"] += len(failed)  # quarantined: QuarantinedSession rows
            counts["deleted"] += len(batch.snapshots) - len(archived) - len(failed)
            for snapshot in archived:
                counts[batch.outcomes[snapshot[0]]] += 1
