"""The django-celery-beat schedule of the jobs in sessions_app.jobs.JOBS, in line with the policy.

Cleanup runs every `cleanup_interval_minutes` of the global retention policy and follows it when
an admin edits the policy (post_save below). The two daily jobs are created with their default
times; once they exist their schedules are left to the admin (the beat admin edits them).
"""

import logging

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from sessions_app.jobs import JOBS
from sessions_app.models import RetentionPolicy
from sessions_app.policies import global_effective_policy

logger = logging.getLogger(__name__)

_CLEANUP = JOBS["cleanup"]
CLEANUP_TASK_NAME = _CLEANUP.title
RETENTION_TASK_NAME = JOBS["retention"].title
METRICS_TASK_NAME = JOBS["metrics"].title
CLEANUP_TASK = _CLEANUP.task
RETENTION_TASK = JOBS["retention"].task
METRICS_TASK = JOBS["metrics"].task

# (name, task, minute, hour) of the crontab jobs, in UTC, from the registry.
DAILY_TASKS = tuple(
    (job.title, job.task, *job.schedule.split())
    for job in JOBS.values()
    if job.schedule != "policy"
)


def sync_cleanup_schedule(interval_minutes: int) -> PeriodicTask:
    """Create or update the cleanup task to run every `interval_minutes`."""
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=interval_minutes, period=IntervalSchedule.MINUTES
    )
    task = PeriodicTask.objects.filter(name=CLEANUP_TASK_NAME).first()
    if task is None:
        task = PeriodicTask.objects.create(
            name=CLEANUP_TASK_NAME,
            task=CLEANUP_TASK,
            interval=interval,
            description=_CLEANUP.description,
        )
        logger.info("created schedule %r: every %s min", task.name, interval_minutes)
    elif task.interval_id != interval.id or task.task != CLEANUP_TASK or task.crontab_id:
        # Saving a PeriodicTask bumps django-celery-beat's change marker, so beat reloads it.
        task.interval = interval
        task.crontab = None
        task.task = CLEANUP_TASK
        task.save()
        logger.info("updated schedule %r: every %s min", task.name, interval_minutes)
    return task


def sync_periodic_tasks() -> dict[str, PeriodicTask]:
    """Create or update the three PeriodicTask rows; safe to call on every start."""
    with transaction.atomic():
        policy = global_effective_policy()
        tasks = {CLEANUP_TASK: sync_cleanup_schedule(policy.cleanup_interval_minutes)}
        for name, task_path, minute, hour in DAILY_TASKS:
            task = PeriodicTask.objects.filter(name=name).first()
            if task is None:
                crontab, _ = CrontabSchedule.objects.get_or_create(
                    minute=minute,
                    hour=hour,
                    day_of_week="*",
                    day_of_month="*",
                    month_of_year="*",
                    timezone="UTC",
                )
                task = PeriodicTask.objects.create(name=name, task=task_path, crontab=crontab)
                logger.info("created schedule %r: crontab %s %s (UTC)", name, minute, hour)
            elif task.task != task_path:
                task.task = task_path
                task.save()
            tasks[task_path] = task
    return tasks


@receiver(post_save, sender=RetentionPolicy)
def _policy_saved(sender, instance: RetentionPolicy, raw: bool = False, **kwargs):
    # Only the global row carries the cleanup interval that the schedule follows; `raw` is a
    # fixture load, where the schedule tables may not be ready.
    if raw or not instance.is_global:
        return
    sync_cleanup_schedule(global_effective_policy(instance).cleanup_interval_minutes)
