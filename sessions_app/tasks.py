"""Celery tasks: one thin task per job of sessions_app.jobs.JOBS, with its time limits."""

from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from sessions_app import jobs
from sessions_app.store import keys as store_keys


def recompute_recent_metrics(days: int = 2) -> dict:
    """Recompute DailyMetric rows for the last `days` days (in TIME_ZONE), today included, then
    rebuild the users list's period summaries (`user_summaries`: users per period)."""
    from sessions_app.metrics import compute_daily_metrics  # its own module, loaded on use
    from sessions_app.user_summaries import refresh_user_summaries

    if days < 1:
        raise ValueError("days: must be at least 1")
    if not settings.SESSION_ENABLE_ANALYTICS:
        return {"skipped": "SESSION_ENABLE_ANALYTICS is off"}
    today = timezone.localdate()
    result = compute_daily_metrics(today - timedelta(days=days - 1), today)
    # The users list's per-period totals, from the rollups just recomputed (its freshness).
    return {**result, "user_summaries": refresh_user_summaries()}


def retire_old_data(**kwargs: Any) -> dict:
    """The daily retention job: archived sessions past retention (archive's counts), then
    JobRun rows past JOB_RUN_RETENTION_DAYS (`job_runs_deleted`)."""
    from sessions_app import archive

    counts = archive.delete_old_archived_sessions(**kwargs)
    return {**counts, "job_runs_deleted": jobs.prune_job_runs()}


# The run_job command's names, kept for callers of the old table.
JOBS = jobs.JOBS
run_named_job = jobs.run_named_job


def _task(job: jobs.Job):
    def run(**kwargs: Any) -> dict:
        if job.sharded and "shard" not in kwargs and store_keys.shard_count() > 1:
            # One task per shard: the workers take them in parallel, one lock per shard.
            for shard in store_keys.shards():
                TASKS[job.short].delay(shard=shard, **kwargs)
            return {"queued_shards": store_keys.shard_count()}
        return jobs.run_named_job(job.short, **kwargs)

    run.__name__ = run.__qualname__ = job.task_function
    run.__doc__ = job.description
    # The soft limit raises inside the run (recorded as failed, lock released); the hard limit
    # kills a run that ignores it (its lock then expires within its TTL).
    return shared_task(
        name=job.task, time_limit=job.time_limit, soft_time_limit=max(job.time_limit - 60, 1)
    )(run)


# {short name: Celery task}; also module attributes under the task's function name.
TASKS = {short: _task(job) for short, job in JOBS.items()}
cleanup_expired_sessions = TASKS["cleanup"]
delete_old_archived_sessions = TASKS["retention"]
generate_session_metrics = TASKS["metrics"]
