"""Operations: scheduled jobs (last and next run), retention policy, health, and "run now"."""

from datetime import timedelta

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_celery_beat.models import PeriodicTask

from sessions_app import health
from sessions_app.jobs import JOBS
from sessions_app.models import JobRun, RetentionPolicy, SessionType
from sessions_app.policies import all_effective_policies
from sessions_app.views.common import RUN_JOBS, dashboard_view, wants_partial

RECENT_RUNS = 15


def _next_run(task: PeriodicTask, now) -> object:
    """When beat will next run `task` (None if disabled or its schedule cannot say)."""
    if not task.enabled:
        return None
    try:
        remaining = task.schedule.remaining_estimate(task.last_run_at or now)
    except Exception:  # noqa: BLE001 - an odd schedule must not break the page
        return None
    return now + max(remaining, timedelta(0))


def job_rows() -> list[dict]:
    """Each scheduled job with its schedule, last run and next run (three queries in all)."""
    now = timezone.now()
    names = [job.name for job in JOBS.values()]
    last_runs = {
        run.job: run
        for run in JobRun.objects.filter(job__in=names)
        .order_by("job", "-started_at")
        .distinct("job")
    }
    last_failures = {
        run.job: run
        for run in JobRun.objects.filter(job__in=names, outcome=JobRun.Outcome.FAILED)
        .order_by("job", "-started_at")
        .distinct("job")
    }
    tasks = {
        task.task: task
        for task in PeriodicTask.objects.filter(task__in=[job.task for job in JOBS.values()])
        .select_related("interval", "crontab")
        .order_by("id")
    }
    rows = []
    for short, spec in JOBS.items():
        task = tasks.get(spec.task)
        job = spec.name
        rows.append(
            {
                "short": short,
                "job": job,
                "description": spec.title,
                "task": task,
                "schedule": str(task.interval or task.crontab) if task else None,
                "next_run": _next_run(task, now) if task else None,
                "last_run": last_runs.get(job),
                "last_failure": last_failures.get(job),
            }
        )
    return rows


def policy_rows() -> list[dict]:
    """The effective retention policy of every session type, overridden fields marked."""
    policies = all_effective_policies()
    return [
        {"type": value, "label": label, "policy": policies[value]}
        for value, label in SessionType.choices
    ]


@dashboard_view()
def operations(request):
    """Jobs, schedules and policies; the health panel loads lazily (a worker ping takes ~1 s)."""
    context = {
        "active_nav": "operations",
        "jobs": job_rows(),
        "recent_runs": JobRun.objects.all()[:RECENT_RUNS],
        "policies": policy_rows(),
        "policy_fields": RetentionPolicy.POLICY_FIELDS,
        "can_run": request.user.has_perm(RUN_JOBS),
    }
    return render(request, "dashboard/operations.html", context)


@dashboard_view()
def operations_health(request):
    """The health panel (HTMX partial; a full page when opened directly)."""
    context = {"active_nav": "operations", "health": health.system_health()}
    template = "partials/health.html" if wants_partial(request) else "dashboard/health.html"
    return render(request, template, context)


@dashboard_view(RUN_JOBS)
@require_POST
def run_job_now(request, job: str):
    """Queue one of the scheduled jobs on the Celery worker now."""
    if job not in JOBS:
        raise Http404("No such job.")
    from sessions_app import tasks  # the worker's module; only needed when a job is queued

    description = JOBS[job].title
    try:
        tasks.TASKS[job].delay()
    except Exception as error:  # noqa: BLE001 - the broker's errors vary; say what happened
        messages.error(request, f"Could not queue “{description}”: {error}")
    else:
        messages.success(
            request, f"Queued “{description}”. Its run appears below once a worker picks it up."
        )
    return redirect("dashboard:operations")
