"""Celery tasks: thin wrappers that run a service under its job lock (sessions_app.jobs)."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from sessions_app import archive, jobs


def recompute_recent_metrics(days: int = 2) -> dict:
    """Recompute DailyMetric rows for the last `days` days (in TIME_ZONE), today included."""
    from sessions_app.metrics import compute_daily_metrics  # its own module, loaded on use

    if days < 1:
        raise ValueError("days: must be at least 1")
    if not settings.SESSION_ENABLE_ANALYTICS:
        return {"skipped": "SESSION_ENABLE_ANALYTICS is off"}
    today = timezone.localdate()
    return compute_daily_metrics(today - timedelta(days=days - 1), today)


# Short names (the run_job command's argument) -> (JobRun.job name, service function).
JOBS: dict[str, tuple[str, Callable[..., Any]]] = {
    "cleanup": (jobs.CLEANUP, archive.archive_due_sessions),
    "retention": (jobs.RETENTION, archive.delete_old_archived_sessions),
    "metrics": (jobs.METRICS, recompute_recent_metrics),
}


def run_named_job(short_name: str, **kwargs: Any) -> dict:
    """Run one of JOBS now under its lock; a summary of its JobRun."""
    name, func = JOBS[short_name]
    run = jobs.run_job(name, func, **kwargs)
    return {"job": run.job, "outcome": run.outcome, "counts": run.counts, "error": run.error}


@shared_task
def cleanup_expired_sessions() -> dict:
    return run_named_job("cleanup")


@shared_task
def delete_old_archived_sessions() -> dict:
    return run_named_job("retention")


@shared_task
def generate_session_metrics(days: int = 2) -> dict:
    return run_named_job("metrics", days=days)
