"""Operations: scheduled jobs (last and next run), retention policy, health, and "run now"."""

from datetime import timedelta

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_celery_beat.models import PeriodicTask

from sessions_app import audit, health, jobs
from sessions_app.jobs import JOBS
from sessions_app.models import JobRun, QuarantinedSession, RetentionPolicy, SessionType
from sessions_app.policies import all_effective_policies
from sessions_app.views.common import RUN_JOBS, dashboard_view, wants_partial

RECENT_RUNS = 15
# After "Run now" the jobs panel refreshes itself until the run is recorded, at most this long.
WATCH_SECONDS = 120


def schedule_text(task: PeriodicTask) -> tuple[str, str]:
    """(readable schedule, raw form): ("At 03:30 AM UTC", "30 3 * * * (m/h/dM/MY/d) UTC")."""
    raw = str(task.interval or task.crontab or "")
    if task.crontab is not None:
        text = task.crontab.human_readable
        if text.startswith("Every"):  # "Every 15 minutes UTC": the zone says nothing there
            text = text.removesuffix(f" {task.crontab.timezone}")
        return text, raw
    return raw[:1].upper() + raw[1:], raw


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
        schedule, schedule_raw = schedule_text(task) if task else (None, None)
        rows.append(
            {
                "short": short,
                "job": job,
                "description": spec.title,
                "task": task,
                "schedule": schedule,
                "schedule_raw": schedule_raw,
                "next_run": _next_run(task, now) if task else None,
                "last_run": last_runs.get(job),
                "last_failure": last_failures.get(job),
            }
        )
    return rows


# The policy table's columns: (field, unit).
POLICY_COLUMNS = (
    ("default_ttl_hours", "h"),
    ("max_ttl_hours", "h"),
    ("idle_timeout_minutes", "min"),
    ("retention_days", "days"),
    ("max_queries_per_session", ""),
    ("cleanup_interval_minutes", "min"),
)


def source_label(source: str) -> str:
    """Where an effective value comes from, in words (from EffectivePolicy.sources)."""
    if source == "type":
        return "type override"
    if source == "global":
        return "global policy"
    if source == "none":
        return "not set"
    return f"{source} (environment default)"  # the SESSION_* setting's name


def policy_rows() -> list[dict]:
    """The effective retention policy of every session type: each value with its source."""
    policies = all_effective_policies()
    rows = []
    for value, label in SessionType.choices:
        policy = policies[value]
        sources = dict(policy.sources)
        cells = [
            {
                "field": name,
                "value": getattr(policy, name),
                "unit": unit,
                "source": sources.get(name, ""),
                "source_label": source_label(sources.get(name, "")),
                "overridden": name in policy.overridden,
            }
            for name, unit in POLICY_COLUMNS
        ]
        rows.append({"type": value, "label": label, "policy": policy, "cells": cells})
    return rows


def _watch(rows: list[dict], job: str, since: str) -> dict | None:
    """The job "Run now" queued (?watch=JOB&since=EPOCH), while its run is not recorded yet."""
    try:
        started = float(since)
    except ValueError:
        return None
    now = timezone.now().timestamp()
    row = next((row for row in rows if row["short"] == job), None)
    if row is None or not 0 <= now - started <= WATCH_SECONDS:
        return None
    last = row["last_run"]
    if last is not None and last.started_at.timestamp() >= started - 1 and last.finished_at:
        return None  # recorded: stop refreshing
    return {"job": job, "since": since}


def _jobs_context(request, watch: str = "", since: str = "") -> dict:
    rows = job_rows()
    watch = watch or request.GET.get("watch", "")
    since = since or request.GET.get("since", "")
    return {
        "active_nav": "operations",
        "jobs": rows,
        # The every-minute alert evaluation would fill the list; its failures still show.
        "recent_runs": JobRun.objects.exclude(job=jobs.ALERTS, outcome="success")[:RECENT_RUNS],
        "can_run": request.user.has_perm(RUN_JOBS),
        "watch": _watch(rows, watch, since),
    }


QUARANTINE_SHOWN = 10


def quarantine_summary() -> dict:
    """The sessions the archiver could not write: how many, and the latest few with the error."""
    rows = QuarantinedSession.objects.only(
        "session_id", "user_id", "session_type", "error", "quarantined_at", "attempts"
    )
    return {"count": rows.count(), "latest": list(rows[:QUARANTINE_SHOWN])}


@dashboard_view()
def operations(request):
    """Jobs, schedules and policies; the health panel loads lazily (a worker ping takes ~1 s).
    An HTMX request gets the jobs panel only (it refreshes itself after "Run now")."""
    context = _jobs_context(request)
    if wants_partial(request):
        return render(request, "partials/operations_jobs.html", {**context, "is_partial": True})
    context.update(
        policies=policy_rows(),
        policy_fields=RetentionPolicy.POLICY_FIELDS,
        quarantine=quarantine_summary(),
    )
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
    queued_at = timezone.now().timestamp()
    try:
        tasks.TASKS[job].delay()
    except Exception as error:  # noqa: BLE001 - the broker's errors vary; say what happened
        messages.error(request, f"Could not queue “{description}”: {error}")
        queued = False
    else:
        audit.record("run_job", "job", JOBS[job].name, actor=request, object_repr=description)
        messages.success(
            request, f"Queued “{description}”. Its run appears below once a worker picks it up."
        )
        queued = True
    if not wants_partial(request):
        return redirect("dashboard:operations")
    context = _jobs_context(request, job, f"{queued_at:.3f}") if queued else _jobs_context(request)
    return render(request, "partials/operations_jobs.html", {**context, "is_partial": True})
