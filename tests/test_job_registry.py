"""The job registry is the one definition of each job; locks are redis-py's, fenced by a lease
row in Postgres; runs that could not be recorded survive a restart; tasks have time limits."""

import threading
import time

import pytest
from django.db import connection, transaction
from django_celery_beat.models import PeriodicTask
from redis.lock import Lock

from fimlsessions.celery import app as celery_app
from sessions_app import jobs, schedules, tasks
from sessions_app.models import JobLease, JobRun
from sessions_app.redis_client import get_redis
from tests.test_apikeys import postgres_unreachable

pytestmark = pytest.mark.django_db


def test_every_job_is_scheduled_registered_and_time_limited_from_the_registry():
    schedules.sync_periodic_tasks()
    scheduled = set(PeriodicTask.objects.values_list("task", flat=True))
    assert scheduled == {job.task for job in jobs.JOBS.values()}
    for short, job in jobs.JOBS.items():
        task = celery_app.tasks[job.task]
        assert tasks.TASKS[short].name == task.name
        assert task.time_limit == job.time_limit
        assert 0 < task.soft_time_limit < job.time_limit


def test_the_lock_is_redis_pys_own_and_held_by_token():
    token = jobs.acquire_lock("demo", ttl_seconds=30)
    # Any redis-py Lock with the token can check it: the same format on both sides.
    other = Lock(get_redis(), jobs.lock_key("demo"), timeout=30)
    assert not other.acquire(blocking=False)
    other.local.token = token.encode()
    assert other.owned()
    assert jobs.release_lock("demo", token)


def test_a_run_whose_lock_was_taken_over_cannot_write():
    def still_mine():
        with transaction.atomic():
            jobs.assert_lease()
        return {"wrote": 1}

    assert jobs.run_job("demo", still_mine).outcome == JobRun.Outcome.SUCCESS

    def lost_it():
        # The lock expired during a long pause and another run took it (its lease, too).
        jobs.take_lease("demo", "the-next-run")
        with transaction.atomic():
            jobs.assert_lease()
        return {"wrote": 1}

    run = jobs.run_job("demo", lost_it)
    assert run.outcome == JobRun.Outcome.FAILED and "StaleLease" in run.error
    assert JobLease.objects.get(job="demo").fence == 3
    jobs.assert_lease()  # outside a run: nothing to check


@pytest.mark.django_db(transaction=True)
def test_a_takeover_waits_for_the_old_holders_transaction():
    order = []
    holding = threading.Event()

    def old_holder():
        with transaction.atomic():
            jobs.assert_lease()
            holding.set()
            threading.Event().wait(0.3)
            order.append("old run committed")
        return {}

    def new_holder():
        holding.wait(10)
        jobs.take_lease("demo", "new-token")
        order.append("new run took the lease")
        connection.close()

    thread = threading.Thread(target=new_holder)
    thread.start()
    jobs.run_job("demo", old_holder)
    thread.join(10)
    assert order == ["old run committed", "new run took the lease"]


@pytest.mark.django_db(transaction=True)
def test_runs_that_could_not_be_recorded_survive_a_restart():
    with postgres_unreachable():
        lost = jobs.run_job("demo", lambda: {"ran": 1})
    assert lost.outcome == JobRun.Outcome.FAILED and lost.pk is None
    jobs._unrecorded.clear()  # the process restarts: its memory is gone, Redis is not
    jobs.run_job("demo", lambda: {"ran": 1})
    runs = list(JobRun.objects.filter(job="demo").order_by("started_at"))
    assert [run.outcome for run in runs] == ["failed", "success"]
    assert runs[0].error and runs[0].finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_one_lock_per_shard_lets_shards_run_in_parallel_but_each_once():
    inside = threading.Barrier(2, timeout=10)

    def archive_shard():
        inside.wait()  # both shards' runs are inside their locks at the same time
        return {"ok": 1}

    results = {}

    def run(shard):
        results[shard] = jobs.run_job("demo", archive_shard, lock=f"demo@{shard}").outcome
        connection.close()

    threads = [threading.Thread(target=run, args=(shard,)) for shard in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == {0: "success", 1: "success"}
    token = jobs.acquire_lock("demo@0")
    assert jobs.run_job("demo", lambda: {}, lock="demo@0").outcome == JobRun.Outcome.SKIPPED
    assert jobs.run_job("demo", lambda: {}, lock="demo@1").outcome == JobRun.Outcome.SUCCESS
    jobs.release_lock("demo@0", token)


def test_an_archive_run_whose_lock_was_taken_over_writes_nothing(store):
    """Issue 13: the archive's Postgres transaction is fenced by the run's lease."""
    from sessions_app import archive
    from sessions_app.models import Session

    session = store.create_session(session_type="equity", user_id="fenced")
    store.end_session(session.id, archive=False)

    def archive_after_losing_the_lock():
        jobs.take_lease("demo-archive", "the-next-run")
        return archive.archive_due_sessions()

    run = jobs.run_job("demo-archive", archive_after_losing_the_lock)
    assert run.outcome == JobRun.Outcome.FAILED and "StaleLease" in run.error
    assert not Session.objects.filter(id=session.id).exists()
    assert store.get_session(session.id).is_live  # still in Redis for the next run
    # Outside a stale run it goes through, once the failed run's claim lease has passed.
    later = time.time() + archive.CLAIM_LEASE_SECONDS + 1
    assert archive.archive_due_sessions(now=later)["archived"] == 1
    assert Session.objects.filter(id=session.id).exists()
