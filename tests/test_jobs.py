"""Background jobs: the per-job lock, JobRun rows, Celery tasks, beat schedules, commands."""

import threading
from collections import Counter
from datetime import timedelta

import pytest
import redis
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from fimlsessions.celery import app as celery_app
from sessions_app import archive, jobs, schedules, tasks
from sessions_app.models import DailyMetric, JobRun, RetentionPolicy, Session
from sessions_app.policies import clear_policy_cache
from sessions_app.redis_client import get_redis
from sessions_app.store import QueryRecord, get_session_store
from sessions_app.store import keys as skeys
from tests.factories import archived_sessions, event_rows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_policies():
    clear_policy_cache()
    yield
    clear_policy_cache()


def due_sessions(n, queries=1):
    """n live sessions that are due for archiving now: ended (not yet archived) by the client."""
    store = get_session_store()
    sessions = []
    for i in range(n):
        session = store.create_session(assets=["AAPL"], user_id=f"u{i % 7}")
        for _ in range(queries):
            store.add_query(session.id, QueryRecord(query_type="price", cache_hit=True))
        store.end_session(session.id, "completed", archive=False)
        sessions.append(session)
    return sessions


def run_together(n, target):
    """Start n threads on `target` at the same moment; their results, in thread order."""
    barrier = threading.Barrier(n)
    results = [None] * n
    errors = []

    def work(index):
        try:
            barrier.wait()
            results[index] = target()
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()  # each thread's own database connection

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


# ---- run_job: lock and JobRun rows ------------------------------------------------------------


def test_run_job_records_success_with_counts_and_duration():
    run = jobs.run_job("demo", lambda n: {"done": n, "when": timezone.now().date()}, n=3)
    assert run.outcome == JobRun.Outcome.SUCCESS
    stored = JobRun.objects.get(pk=run.pk)
    assert stored.counts == {"done": 3, "when": timezone.now().date().isoformat()}
    assert stored.finished_at >= stored.started_at and stored.duration_ms >= 0
    assert get_redis().get(jobs.lock_key("demo")) is None  # released


def test_run_job_records_failure_and_releases_the_lock():
    def broken():
        raise RuntimeError("disk on fire")

    run = jobs.run_job("demo", broken)
    stored = JobRun.objects.get(pk=run.pk)
    assert stored.outcome == JobRun.Outcome.FAILED
    assert "RuntimeError: disk on fire" in stored.error
    assert stored.finished_at is not None
    assert get_redis().get(jobs.lock_key("demo")) is None


def test_run_job_skips_while_another_run_holds_the_lock():
    token = jobs.acquire_lock("demo")
    called = []
    run = jobs.run_job("demo", lambda: called.append(1) or {})
    assert run.outcome == JobRun.Outcome.SKIPPED and called == []
    assert JobRun.objects.get(pk=run.pk).outcome == JobRun.Outcome.SKIPPED
    assert jobs.release_lock("demo", token)
    assert jobs.run_job("demo", lambda: {"ok": 1}).outcome == JobRun.Outcome.SUCCESS


def test_lock_is_released_only_by_its_holder():
    token = jobs.acquire_lock("demo", ttl_seconds=30)
    assert token and jobs.acquire_lock("demo") is None
    assert jobs.release_lock("demo", "someone-else") is False
    assert get_redis().get(jobs.lock_key("demo")) == token
    assert 0 < get_redis().pttl(jobs.lock_key("demo")) <= 30_000
    assert jobs.release_lock("demo", token) is True


def test_run_job_without_redis_records_a_clear_failure(monkeypatch):
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    monkeypatch.setattr(jobs, "get_redis", lambda: down)  # nothing listens on port 1
    ran = []
    run = jobs.run_job("demo", lambda: ran.append(1) or {"ran": 1})
    assert run.outcome == JobRun.Outcome.FAILED and ran == []
    assert "could not take the job lock" in JobRun.objects.get(pk=run.pk).error


# ---- concurrency: each session processed once --------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_cleanup_jobs_started_together_process_each_session_once(redis_prefix, settings):
    settings.REDIS_SHARDS = 1  # one lock for the job (shards: see the per-shard test below)
    sessions = due_sessions(40)
    results = run_together(2, tasks.cleanup_expired_sessions)
    outcomes = sorted(result["outcome"] for result in results)
    archived = [result["counts"].get("archived", 0) for result in results]
    assert outcomes in (["skipped", "success"], ["success", "success"])
    assert sum(archived) == 40
    runs = JobRun.objects.filter(job=jobs.CLEANUP)
    assert sorted(runs.values_list("outcome", flat=True)) == outcomes
    assert Session.objects.count() == 40
    assert len(event_rows()) == 40
    assert set(Session.objects.values_list("id", flat=True)) == {s.id for s in sessions}
    assert list(get_redis().scan_iter(match=f"{redis_prefix}:*:s:*")) == []


@pytest.mark.django_db(transaction=True)
def test_two_archivers_without_the_lock_still_split_the_work(redis_prefix):
    due_sessions(120, queries=2)
    results = run_together(2, lambda: archive.archive_due_sessions(batch_size=7))
    assert sum(result["archived"] for result in results) == 120
    assert Session.objects.count() == 120
    assert len(event_rows()) == 240
    assert list(get_redis().scan_iter(match=f"{redis_prefix}:*:s:*")) == []


# ---- Celery tasks ------------------------------------------------------------------------


def test_tasks_are_registered_under_the_names_beat_uses():
    for task in (schedules.CLEANUP_TASK, schedules.RETENTION_TASK, schedules.METRICS_TASK):
        assert task in celery_app.tasks


def test_cleanup_task_archives_and_writes_a_job_run(settings):
    settings.REDIS_SHARDS = 1
    sessions = due_sessions(3)
    result = tasks.cleanup_expired_sessions.apply().get()
    assert result["outcome"] == "success" and result["counts"]["archived"] == 3
    run = JobRun.objects.get(job=jobs.CLEANUP)
    assert run.counts["archived"] == 3 and run.outcome == "success"
    assert Session.objects.filter(id__in=[s.id for s in sessions]).count() == 3


def test_with_shards_the_cleanup_task_queues_one_task_per_shard(settings, monkeypatch):
    """Beat's tick queues one cleanup per shard (so N workers take N shards); each runs under
    its shard's lock and archives that shard only."""
    settings.REDIS_SHARDS = 3
    sessions = due_sessions(12)
    queued = []
    monkeypatch.setattr(tasks.TASKS["cleanup"], "delay", lambda **kw: queued.append(kw))
    assert tasks.cleanup_expired_sessions.apply().get() == {"queued_shards": 3}
    assert queued == [{"shard": 0}, {"shard": 1}, {"shard": 2}]
    per_shard = Counter(skeys.shard_of(str(s.id)) for s in sessions)
    for kwargs in queued:  # what three workers would run
        result = tasks.cleanup_expired_sessions.apply(kwargs=kwargs).get()
        assert result["counts"]["archived"] == per_shard[kwargs["shard"]]
    assert JobRun.objects.filter(job=jobs.CLEANUP, outcome="success").count() == 3
    assert Session.objects.count() == 12


def test_retention_task_deletes_past_retention():
    now = timezone.now()
    archived_sessions(
        [
            {"archived_at": now - timedelta(days=45), "queries": [{}]},
            {"archived_at": now - timedelta(days=2), "queries": [{}]},
        ]
    )
    result = tasks.delete_old_archived_sessions.apply().get()
    # Older than every type's retention: its archive day is dropped whole.
    assert result["counts"] == {
        "sessions": 1,
        "dropped_days": 1,
        "dropped_sessions": 1,
        "events": 0,
        "batches": 0,
        "tombstones": 0,
        "job_runs_deleted": 0,
    }
    assert Session.objects.count() == 1
    assert JobRun.objects.get(job=jobs.RETENTION).outcome == "success"


def test_metrics_task_recomputes_recent_days():
    today = timezone.now()
    archived_sessions([{"created_at": today - timedelta(minutes=30), "queries": [{}, {}]}])
    result = tasks.generate_session_metrics.apply(kwargs={"days": 2}).get()
    assert result["outcome"] == "success"
    row = DailyMetric.objects.get(day=timezone.localdate(today), session_type="equity")
    assert row.sessions_started == 1 and row.queries == 2
    # Idempotent: a second run replaces, never adds.
    tasks.generate_session_metrics.apply(kwargs={"days": 2}).get()
    assert DailyMetric.objects.get(day=row.day, session_type="equity").queries == 2
    assert JobRun.objects.filter(job=jobs.METRICS, outcome="success").count() == 2


def test_metrics_task_does_nothing_with_analytics_disabled(settings):
    settings.SESSION_ENABLE_ANALYTICS = False
    archived_sessions([{"created_at": timezone.now() - timedelta(minutes=30), "queries": [{}]}])
    result = tasks.generate_session_metrics.apply(kwargs={"days": 2}).get()
    assert result["counts"] == {"skipped": "SESSION_ENABLE_ANALYTICS is off"}
    assert not DailyMetric.objects.exists()


# ---- schedules ---------------------------------------------------------------------------


def test_sync_periodic_tasks_is_idempotent_and_uses_the_policy():
    RetentionPolicy.objects.filter(session_type="").update(cleanup_interval_minutes=20)
    first = schedules.sync_periodic_tasks()
    second = schedules.sync_periodic_tasks()
    assert PeriodicTask.objects.filter(task__startswith="sessions_app.tasks.").count() == len(
        jobs.JOBS
    )
    assert {t.pk for t in first.values()} == {t.pk for t in second.values()}
    cleanup = PeriodicTask.objects.get(task=schedules.CLEANUP_TASK)
    assert (cleanup.interval.every, cleanup.interval.period) == (20, "minutes")
    retention = PeriodicTask.objects.get(task=schedules.RETENTION_TASK).crontab
    metrics = PeriodicTask.objects.get(task=schedules.METRICS_TASK).crontab
    assert (retention.hour, retention.minute, str(retention.timezone)) == ("3", "30", "UTC")
    assert (metrics.hour, metrics.minute, str(metrics.timezone)) == ("*", "*/15", "UTC")


def test_schedule_follows_the_policy_when_an_admin_changes_it():
    schedules.sync_periodic_tasks()
    policy = RetentionPolicy.objects.get(session_type="")
    policy.cleanup_interval_minutes = 5
    policy.save()
    cleanup = PeriodicTask.objects.get(task=schedules.CLEANUP_TASK)
    assert cleanup.interval.every == 5
    # A per-type override has no cleanup interval of its own: the schedule stays.
    RetentionPolicy.objects.create(session_type="crypto", cleanup_interval_minutes=1)
    assert PeriodicTask.objects.get(task=schedules.CLEANUP_TASK).interval.every == 5


def test_admin_edited_daily_schedule_is_kept_on_resync():
    schedules.sync_periodic_tasks()
    task = PeriodicTask.objects.get(task=schedules.RETENTION_TASK)
    task.crontab = CrontabSchedule.objects.create(minute="0", hour="5", timezone="UTC")
    task.save()
    schedules.sync_periodic_tasks()
    assert PeriodicTask.objects.get(task=schedules.RETENTION_TASK).crontab.hour == "5"


# ---- management commands -----------------------------------------------------------------


def test_run_job_command_prints_counts(capsys):
    due_sessions(2)
    call_command("run_job", "cleanup")
    out = capsys.readouterr().out
    assert "cleanup_expired_sessions: success" in out and '"archived": 2' in out
    call_command("run_job", "retention")
    assert '"sessions": 0' in capsys.readouterr().out
    with pytest.raises(CommandError, match="--days"):
        call_command("run_job", "cleanup", days=3)


def test_run_job_command_fails_loudly_when_the_job_fails(monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(archive, "archive_due_sessions", broken)
    with pytest.raises(CommandError, match="RuntimeError: boom"):
        call_command("run_job", "cleanup")


@pytest.fixture
def bootstrap_env(settings, tmp_path, monkeypatch):
    settings.STATIC_ROOT = tmp_path / "static"
    for name in ("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD", "SEED_DEMO"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_bootstrap_first_run_then_idempotent(bootstrap_env, django_user_model, capsys):
    bootstrap_env.setenv("SEED_DEMO", "false")
    call_command("bootstrap")
    out = capsys.readouterr().out
    admin = django_user_model.objects.get(is_superuser=True)
    assert admin.username == "admin"
    password = next(line for line in out.splitlines() if "password:" in line).split()[-2]
    assert admin.check_password(password)
    assert "+---" in out and "demo data: skipped" in out
    assert PeriodicTask.objects.filter(task__startswith="sessions_app.tasks.").count() == len(
        jobs.JOBS
    )

    call_command("bootstrap")
    out = capsys.readouterr().out
    assert "admin user: exists" in out and "password:" not in out
    assert django_user_model.objects.filter(is_superuser=True).count() == 1
    assert PeriodicTask.objects.filter(task__startswith="sessions_app.tasks.").count() == len(
        jobs.JOBS
    )


def test_bootstrap_uses_the_superuser_environment(bootstrap_env, django_user_model, capsys):
    bootstrap_env.setenv("SEED_DEMO", "false")
    bootstrap_env.setenv("DJANGO_SUPERUSER_USERNAME", "root")
    bootstrap_env.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-test-password-1")
    call_command("bootstrap")
    out = capsys.readouterr().out
    user = django_user_model.objects.get(is_superuser=True)
    assert user.username == "root" and user.check_password("a-long-test-password-1")
    assert "a-long-test-password-1" not in out


def test_bootstrap_seeds_demo_data_once(bootstrap_env, capsys):
    from sessions_app.management.commands import bootstrap

    bootstrap_env.setattr(
        bootstrap, "SEED_ARGS", ("--sessions", "12", "--live", "2", "--no-progress", "--no-metrics")
    )
    call_command("bootstrap")
    assert Session.objects.count() == 12
    assert sum(get_redis().zcard(skeys.activity(s)) for s in skeys.shards()) == 2
    assert JobRun.objects.get(job=jobs.SEED).outcome == "success"
    call_command("bootstrap")
    assert "demo data: skipped" in capsys.readouterr().out
    assert Session.objects.count() == 12


def test_retention_job_prunes_job_runs_past_their_retention(settings):
    settings.JOB_RUN_RETENTION_DAYS = 7
    now = timezone.now()

    def run(job, days_ago):
        return JobRun.objects.create(
            job=job, started_at=now - timedelta(days=days_ago), outcome="success"
        )

    old = [run(jobs.ALERTS, 8 + minute / 1440) for minute in range(30)]
    kept = [run(jobs.ALERTS, 6), run(jobs.METRICS, 1)]
    lonely = run("seed_demo", 400)  # a job's only (latest) run stays, however old
    result = tasks.delete_old_archived_sessions.apply().get()
    assert result["counts"]["job_runs_deleted"] == len(old)
    left = set(JobRun.objects.exclude(job=jobs.RETENTION).values_list("id", flat=True))
    assert left == {r.id for r in [*kept, lonely]}
    # Batches: a backlog goes in several short statements, with the same result.
    more = [run(jobs.ALERTS, 20 + i) for i in range(7)]
    assert jobs.prune_job_runs(keep_days=7, batch=3) == len(more)
    assert not JobRun.objects.filter(id__in=[r.id for r in more]).exists()
