"""Background job bookkeeping: one Redis lock per job and a JobRun row for every run.

A run takes `P:lock:{job}` with `SET NX PX` and a random token, so two beats or two workers
cannot run the same job at once; the loser records a `skipped` JobRun. The lock is released
only by its holder (token compared in Lua), so a run that outlived its lock TTL cannot free the
lock of the run that took over.
"""

import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from sessions_app.models import JobRun
from sessions_app.redis_client import get_redis, key

logger = logging.getLogger(__name__)

# JobRun.job names, one per scheduled job.
CLEANUP = "cleanup_expired_sessions"
RETENTION = "delete_old_archived_sessions"
METRICS = "generate_session_metrics"
SEED = "seed_demo"

# A live run renews its lock every third of this, so the lock never expires under a slow run,
# while a run killed outright (SIGKILL, lost host) frees its job within this time.
DEFAULT_LOCK_TTL_SECONDS = 60

# Runs whose JobRun row could not be saved (Postgres down), kept for the next run of this
# process to record; bounded so a long outage cannot grow it without limit.
_unrecorded: deque[JobRun] = deque(maxlen=100)

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class _LockRenewer(threading.Thread):
    """Pushes the lock's expiry back every ttl/3 while the run lives (until stop())."""

    def __init__(self, job: str, token: str, ttl_seconds: float):
        super().__init__(name=f"lock-{job}", daemon=True)
        self.job, self.token, self.ttl_seconds = job, token, ttl_seconds
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.ttl_seconds / 3):
            try:
                ttl_ms = int(self.ttl_seconds * 1000)
                get_redis().eval(_RENEW_SCRIPT, 1, lock_key(self.job), self.token, ttl_ms)
            except Exception:  # a Redis hiccup: the next renewal may succeed
                logger.warning("job %s: could not renew its lock", self.job, exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
        self.join()


def lock_key(job: str) -> str:
    return key("lock", job)


def acquire_lock(job: str, ttl_seconds: float = DEFAULT_LOCK_TTL_SECONDS) -> str | None:
    """The token of a freshly taken lock for `job`, or None when another run holds it."""
    token = secrets.token_hex(16)
    taken = get_redis().set(lock_key(job), token, nx=True, px=int(ttl_seconds * 1000))
    return token if taken else None


def release_lock(job: str, token: str) -> bool:
    """Release the lock if `token` still holds it; True when it was released."""
    return bool(get_redis().eval(_RELEASE_SCRIPT, 1, lock_key(job), token))


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def run_job(
    name: str,
    func: Callable[..., Any],
    *,
    lock_ttl_seconds: float = DEFAULT_LOCK_TTL_SECONDS,
    **kwargs: Any,
) -> JobRun:
    """Run `func(**kwargs)` under the job's lock and record the run; returns its JobRun.

    The JobRun outcome is `success` (counts = func's dict result), `failed` (error text) or
    `skipped` (another run held the lock). Errors are recorded, logged and not re-raised.
    """
    started = timezone.now()
    clock = time.perf_counter()
    try:
        token = acquire_lock(name, lock_ttl_seconds)
    except Exception as exc:  # Redis down: no lock, so no run (it would risk overlap)
        logger.exception("job %s: could not take its lock", name)
        return JobRun.objects.create(
            job=name,
            started_at=started,
            finished_at=timezone.now(),
            outcome=JobRun.Outcome.FAILED,
            error=f"could not take the job lock in Redis: {_error_text(exc)}",
            duration_ms=(time.perf_counter() - clock) * 1000,
        )
    if token is None:
        logger.info("job %s: skipped, another run holds the lock", name)
        return JobRun.objects.create(
            job=name,
            started_at=started,
            finished_at=timezone.now(),
            outcome=JobRun.Outcome.SKIPPED,
            duration_ms=(time.perf_counter() - clock) * 1000,
        )
    # The run's own times lie inside its hold of the lock, so the JobRun rows of one job never
    # overlap (a run that waited for the lock does not appear to start before the last ended).
    started = timezone.now()
    run = None
    renewer = _LockRenewer(name, token, lock_ttl_seconds)
    renewer.start()
    try:
        # Holding the lock, no other run of this job is alive: a `running` row is a run that
        # died (worker killed); say so instead of leaving it running forever.
        JobRun.objects.filter(job=name, outcome=JobRun.Outcome.RUNNING).update(
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
        renewer.stop()
        if run is not None:  # None only when a BaseException (e.g. shutdown) is on its way
            run.finished_at = timezone.now()
            run.duration_ms = (time.perf_counter() - clock) * 1000
        try:
            release_lock(name, token)
        except Exception:  # the lock's TTL frees it anyway
            logger.warning("job %s: could not release its lock", name, exc_info=True)
    try:
        _record_held_runs()
        run.save()
    except Exception:  # Postgres down: held in memory until a later run can record it
        logger.exception("job %s: could not record its run; will retry", name)
        _unrecorded.append(run)
    return run


def _record_held_runs() -> None:
    """Save the runs that ended while Postgres was down (oldest first)."""
    while _unrecorded:
        _unrecorded[0].save()
        _unrecorded.popleft()
