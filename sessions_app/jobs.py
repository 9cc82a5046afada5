"""Background jobs: the one registry of jobs, their locks and leases, and a JobRun per run.

`JOBS` below is the only place a job is defined (name, Celery task, schedule, description, the
service it runs, its time limit); `tasks.py`, `schedules.py`, the operations page and the
`run_job` command all read it.

A run holds redis-py's own `Lock` on `P:lock:{job}` (a token, renewed every third of its TTL
while the run lives), so two beats or two workers cannot run the same job at once; the loser
records a `skipped` JobRun. A lock can still be lost (a long pause, a Redis failover), so the
lock's token is also written to the job's lease row in Postgres when the run starts, and a
service that writes to Postgres calls `assert_lease(cursor)` inside its transaction: a run whose
token is no longer the lease's (another run took over) is refused there (`StaleLease`), and a
takeover waits for a running transaction that holds the lease to commit.

A JobRun that cannot be saved (Postgres down) is parked in Redis (`P:jobs:unrecorded`) and
saved by a later run of any process, so it survives a restart.
"""

from __future__ import annotations

import contextvars
import importlib
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from redis.exceptions import LockError
from redis.lock import Lock

from sessions_app.models import JobRun
from sessions_app.redis_client import get_redis, key
from sessions_app.store import keys as store_keys

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One background job, defined once."""

    short: str  # the run_job command's and the operations page's name
    name: str  # JobRun.job and the lock's name
    title: str  # the PeriodicTask's name, shown in the beat admin
    description: str  # one line for the operations page
    service: str  # "module:function" run under the lock (imported on use)
    # "policy" (every cleanup_interval_minutes of the global policy) or "minute hour" (UTC cron)
    schedule: str
    time_limit: int  # seconds: Celery's hard limit; the soft limit is a minute less
    # Runs per shard of the live store (its service takes `shard=`), one lock per shard.
    sharded: bool = False

    @property
    def task(self) -> str:
        """The Celery task's name (beat schedules it by this): tasks.py defines one per job,
        named for the job."""
        return f"sessions_app.tasks.{self.task_function}"

    @property
    def task_function(self) -> str:
        return self.name

    def load(self) -> Callable[..., Any]:
        module, _, function = self.service.partition(":")
        return getattr(importlib.import_module(module), function)


CLEANUP = "cleanup_expired_sessions"
RETENTION = "delete_old_archived_sessions"
METRICS = "generate_session_metrics"
ALERTS = "evaluate_alerts"
SEED = "seed_demo"  # bootstrap's demo data: recorded as a JobRun, never scheduled

JOBS: dict[str, Job] = {
    job.short: job
    for job in (
        Job(
            short="cleanup",
            name=CLEANUP,
            title="Archive expired, idle and ended sessions",
            description="Archives expired, idle and ended live sessions to PostgreSQL.",
            service="sessions_app.archive:archive_due_sessions",
            schedule="policy",
            time_limit=30 * 60,
            sharded=True,
        ),
        Job(
            short="retention",
            name=RETENTION,
            title="Delete archived sessions past retention",
            description=(
                "Deletes archived sessions past the retention period, and job runs older than "
                "JOB_RUN_RETENTION_DAYS."
            ),
            service="sessions_app.tasks:retire_old_data",
            schedule="30 3",
            time_limit=60 * 60,
        ),
        Job(
            short="metrics",
            name=METRICS,
            title="Recompute daily session metrics (today and yesterday)",
            description="Recomputes the daily metrics of the last two days.",
            service="sessions_app.tasks:recompute_recent_metrics",
            # Every 15 minutes, so the overview reads today from rollups too.
            schedule="*/15 *",
            time_limit=15 * 60,
        ),
        Job(
            short="alerts",
            name=ALERTS,
            title="Evaluate alert rules",
            description="Evaluates the alert rules and sends their notifications.",
            service="sessions_app.alerts.evaluate:evaluate_rules",
            schedule="* *",
            time_limit=5 * 60,
        ),
    )
}
BY_NAME = {job.name: job for job in JOBS.values()}

# A live run renews its lock every third of this, so the lock never expires under a slow run,
# while a run killed outright (SIGKILL, lost host) frees its job within this time.
DEFAULT_LOCK_TTL_SECONDS = 60
# Parked JobRuns kept in Redis at most (oldest dropped): a long outage cannot grow it forever.
MAX_UNRECORDED = 1000

# The lease of the run in progress in this thread: (job name, token); see assert_lease.
_lease: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "job_lease", default=None
)
# Last resort when Redis is down too: this process's memory.
_unrecorded: deque[JobRun] = deque(maxlen=100)


class StaleLease(Exception):
    """This run's lock was taken over by another run: its writes must not land."""


def lock_key(job: str) -> str:
    return key("lock", job)


def _lock(job: str, ttl_seconds: float, token: str | None = None) -> Lock:
    lock = Lock(get_redis(), lock_key(job), timeout=ttl_seconds, thread_local=False)
    if token is not None:
        lock.local.token = token.encode()
    return lock


def acquire_lock(job: str, ttl_seconds: float = DEFAULT_LOCK_TTL_SECONDS) -> str | None:
    """The token of a freshly taken lock for `job`, or None when another run holds it."""
    lock = _lock(job, ttl_seconds)
    if not lock.acquire(blocking=False):
        return None
    return lock.local.token.decode()


def release_lock(job: str, token: str) -> bool:
    """Release the lock if `token` still holds it; True when it was released."""
    try:
        _lock(job, DEFAULT_LOCK_TTL_SECONDS, token).release()
    except LockError:
        return False
    return True


class _LockRenewer(threading.Thread):
    """Pushes the lock's expiry back to its full TTL every ttl/3 while the run lives."""

    def __init__(self, job: str, token: str, ttl_seconds: float):
        super().__init__(name=f"lock-{job}", daemon=True)
        self.lock = _lock(job, ttl_seconds, token)
        self.ttl_seconds = ttl_seconds
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.ttl_seconds / 3):
            try:
                self.lock.reacquire()
            except LockError:  # taken over: the lease check stops this run's writes
                logger.error("job lock %s was lost to another run", self.lock.name)
                return
            except Exception:  # a Redis hiccup: the next renewal may succeed
                logger.warning("could not renew the lock %s", self.lock.name, exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
        self.join()


# ---- leases (fencing in Postgres) ------------------------------------------------------------


def take_lease(job: str, token: str) -> None:
    """Make `token` the job's lease in Postgres (waits for a transaction holding the old one)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO sessions_app_joblease (job, token, fence, taken_at) "
            "VALUES (%s, %s, 1, now()) ON CONFLICT (job) DO UPDATE "
            "SET token = EXCLUDED.token, fence = sessions_app_joblease.fence + 1, taken_at = now()",
            [job, token],
        )


def assert_lease(cursor=None) -> None:
    """Inside a service's write transaction: raise StaleLease when this thread's job run no
    longer holds its job's lease. Holds the lease row (FOR SHARE) until the transaction ends,
    so a run taking over waits for these writes. Outside a job run, does nothing."""
    lease = _lease.get()
    if lease is None:
        return
    job, token = lease
    if cursor is None:
        with connection.cursor() as own:
            return assert_lease(own)
    cursor.execute("SELECT token FROM sessions_app_joblease WHERE job = %s FOR SHARE", [job])
    row = cursor.fetchone()
    if row is None or row[0] != token:
        raise StaleLease(f"job {job}: another run took over its lock; this run's writes stop")


# ---- runs ------------------------------------------------------------------------------------


# JobRun rows deleted per statement when pruning: short transactions, whatever the backlog.
PRUNE_BATCH = 5000

_PRUNE_SQL = f"""
DELETE FROM {JobRun._meta.db_table} WHERE id IN (
    SELECT id FROM {JobRun._meta.db_table} r
    WHERE r.started_at < %(cutoff)s
      -- Each job's latest run stays, however old: the operations page shows it.
      AND r.id <> (SELECT l.id FROM {JobRun._meta.db_table} l WHERE l.job = r.job
                   ORDER BY l.started_at DESC, l.id DESC LIMIT 1)
    LIMIT %(batch)s
)
"""  # noqa: S608 - table name is a constant; values are bound


def prune_job_runs(
    now: datetime | None = None, keep_days: int | None = None, batch: int = PRUNE_BATCH
) -> int:
    """Delete JobRun rows started more than `keep_days` (JOB_RUN_RETENTION_DAYS) days before
    `now`, keeping each job's latest run; the number deleted. The every-minute alerts job
    alone records 1,440 runs a day."""
    from django.conf import settings

    keep_days = settings.JOB_RUN_RETENTION_DAYS if keep_days is None else keep_days
    if keep_days < 1 or batch < 1:
        raise ValueError("keep_days and batch: must be at least 1")
    cutoff = (now or timezone.now()) - timedelta(days=keep_days)
    deleted = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(_PRUNE_SQL, {"cutoff": cutoff, "batch": batch})
            deleted += cursor.rowcount
            if cursor.rowcount < batch:
                return deleted


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def run_job(
    name: str,
    func: Callable[..., Any],
    *,
    lock_ttl_seconds: float = DEFAULT_LOCK_TTL_SECONDS,
    lock: str | None = None,
    **kwargs: Any,
) -> JobRun:
    """Run `func(**kwargs)` under the job's lock and lease and record the run; returns its JobRun.

    `lock` names the lock and lease when it is not the job's name: one per shard ("job@3"), so
    N workers run the job on N shards in parallel while each shard has one run at a time.

    The JobRun outcome is `success` (counts = func's dict result), `failed` (error text) or
    `skipped` (another run held the lock). Errors are recorded, logged and not re-raised.
    """
    started = timezone.now()
    clock = time.perf_counter()
    lock = lock or name
    try:
        token = acquire_lock(lock, lock_ttl_seconds)
    except Exception as exc:  # Redis down: no lock, so no run (it would risk overlap)
        logger.exception("job %s: could not take its lock", name)
        return _record(
            JobRun(
                job=name,
                started_at=started,
                finished_at=timezone.now(),
                outcome=JobRun.Outcome.FAILED,
                error=f"could not take the job lock in Redis: {_error_text(exc)}",
                duration_ms=(time.perf_counter() - clock) * 1000,
            )
        )
    if token is None:
        logger.info("job %s: skipped, another run holds the lock", name)
        return _record(
            JobRun(
                job=name,
                started_at=started,
                finished_at=timezone.now(),
                outcome=JobRun.Outcome.SKIPPED,
                duration_ms=(time.perf_counter() - clock) * 1000,
            )
        )
    # The run's own times lie inside its hold of the lock, so the JobRun rows of one job never
    # overlap (a run that waited for the lock does not appear to start before the last ended).
    started = timezone.now()
    run = None
    renewer = _LockRenewer(lock, token, lock_ttl_seconds)
    renewer.start()
    lease = _lease.set((lock, token))
    try:
        take_lease(lock, token)
        # Holding the lock, no other run of this job is alive: a `running` row is a run that
        # died (worker killed); say so instead of leaving it running forever.
        # (Per-shard runs share the job's name: only a single-lock job can say so.)
        running = JobRun.objects.filter(job=name, outcome=JobRun.Outcome.RUNNING)
        if lock == name:
            running.update(
                outcome=JobRun.Outcome.FAILED,
                finished_at=started,
                error="the run stopped without finishing (its worker died)",
            )
        run = JobRun.objects.create(job=name, started_at=started)
        result = func(**kwargs)
        counts = result if isinstance(result, dict) else {"result": result}
        # Dates, decimals and UUIDs in a service's counts become JSON-friendly strings.
        run.counts = json.loads(json.dumps(counts, cls=DjangoJSONEncoder))
        run.outcome = JobRun.Outcome.SUCCESS
        if counts.get("failed"):  # the run finished, but some of its items did not make it
            run.outcome = JobRun.Outcome.FAILED
            run.error = f"{counts['failed']} item(s) failed; see the counts and the logs"
            if name == CLEANUP:
                run.error = (
                    f"{counts['failed']} session(s) could not be archived: they are in the "
                    "quarantine (admin: Quarantined sessions) with the database's error"
                )
        logger.info("job %s: %s %s", name, run.outcome, run.counts)
    except Exception as exc:
        logger.exception("job %s failed", name)
        if run is None:  # Postgres down before the row could be written
            run = JobRun(job=name, started_at=started)
        run.outcome = JobRun.Outcome.FAILED
        run.error = _error_text(exc)
    finally:
        _lease.reset(lease)
        renewer.stop()
        if run is not None:  # None only when a BaseException (e.g. shutdown) is on its way
            run.finished_at = timezone.now()
            run.duration_ms = (time.perf_counter() - clock) * 1000
        if not release_lock(lock, token):
            logger.warning("job %s: its lock was no longer held at the end", name)
    return _record(run)


def run_named_job(short_name: str, shard: int | None = None, **kwargs: Any) -> dict:
    """Run one of JOBS now under its lock (the shard's own lock when `shard` is given, passed
    on to the service); a summary of its JobRun."""
    job = JOBS[short_name]
    if shard is None and job.sharded and store_keys.shard_count() > 1:
        return _run_every_shard(job, **kwargs)
    if shard is not None:
        kwargs["shard"] = shard
    lock = f"{job.name}@{shard}" if shard is not None else None
    run = run_job(job.name, job.load(), lock=lock, **kwargs)
    return {"job": run.job, "outcome": run.outcome, "counts": run.counts, "error": run.error}


def _run_every_shard(job: Job, **kwargs: Any) -> dict:
    """Run a sharded job on each shard in turn under that shard's lock, from a random shard
    on, so workers started together spread over the shards (a shard another worker holds is
    skipped: it is being done). Counts are summed; the outcome is the worst shard's."""
    count = store_keys.shard_count()
    start = secrets.randbelow(count)
    totals: dict[str, Any] = {}
    outcomes, errors = {}, []
    for shard in [(start + step) % count for step in range(count)]:
        run = run_job(job.name, job.load(), lock=f"{job.name}@{shard}", shard=shard, **kwargs)
        outcomes[shard] = run.outcome
        if run.outcome == JobRun.Outcome.SUCCESS:
            for name, value in (run.counts or {}).items():
                if isinstance(value, int | float):
                    totals[name] = totals.get(name, 0) + value
        elif run.error:
            errors.append(f"shard {shard}: {run.error}")
    ran = [o for o in outcomes.values() if o != JobRun.Outcome.SKIPPED]
    if errors or JobRun.Outcome.FAILED in ran:
        outcome = JobRun.Outcome.FAILED
    else:
        outcome = JobRun.Outcome.SUCCESS if ran else JobRun.Outcome.SKIPPED
    totals["shards"] = {str(shard): str(o) for shard, o in sorted(outcomes.items())}
    return {"job": job.name, "outcome": outcome, "counts": totals, "error": "; ".join(errors)}


# ---- JobRun rows that could not be saved ----------------------------------------------------


def _unrecorded_key() -> str:
    return key("jobs", "unrecorded")


_FIELDS = ("job", "started_at", "finished_at", "outcome", "counts", "error", "duration_ms")


def _park(run: JobRun) -> None:
    """Keep an unsaved run in Redis (every process drains it), else in this process."""
    data = {name: getattr(run, name) for name in _FIELDS}
    try:
        client = get_redis()
        pipe = client.pipeline(transaction=True)
        pipe.rpush(_unrecorded_key(), json.dumps(data, cls=DjangoJSONEncoder))
        pipe.ltrim(_unrecorded_key(), -MAX_UNRECORDED, -1)
        pipe.execute()
    except Exception:  # noqa: BLE001 - Redis down as well: memory until this process records
        logger.warning("job %s: could not park its unsaved run in Redis", run.job)
        _unrecorded.append(run)


def _unpark(raw: str) -> JobRun:
    data = json.loads(raw)
    for name in ("started_at", "finished_at"):
        data[name] = parse_datetime(data[name]) if data[name] else None
    return JobRun(**data)


def _record_held_runs() -> None:
    """Save the runs that ended while Postgres was down (oldest first)."""
    while _unrecorded:
        _unrecorded[0].save()
        _unrecorded.popleft()
    client = get_redis()
    while raw := client.lpop(_unrecorded_key()):
        assert isinstance(raw, str)  # one item popped, decode_responses=True
        try:
            _unpark(raw).save()
        except Exception:
            client.lpush(_unrecorded_key(), raw)  # first in line again for the next try
            raise


def _record(run: JobRun) -> JobRun:
    """Save `run` after any runs parked before it; park it when Postgres can't take it."""
    try:
        run.save()
    except Exception:  # Postgres down: parked until a later run (of any process) records it
        logger.exception("job %s: could not record its run; parked for a later run", run.job)
        _park(run)
        return run
    try:
        _record_held_runs()
    except Exception:
        logger.warning("could not record the runs parked during an outage", exc_info=True)
    return run
