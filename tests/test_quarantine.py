"""Issue 11 #1 and #2, archive side: unwritable sessions go to a visible quarantine, never to
expiry, without slowing the batch; a delete wins over a racing end or archive."""

import json
import threading
import time

import pytest
from django.db import connection
from django.urls import reverse

from sessions_app import archive, tasks
from sessions_app.models import DeletedSession, JobRun, QuarantinedSession, Session
from sessions_app.redis_client import get_redis
from sessions_app.store import QueryRecord
from sessions_app.store import keys as skeys

HOUR = 3600


def ended_session(store, queries=2, **kwargs):
    kwargs.setdefault("assets", ["AAPL"])
    # A user id: the store's delete script fails on a session without one (reported).
    kwargs.setdefault("user_id", "u1")
    session = store.create_session(**kwargs)
    for _ in range(queries):
        store.add_query(session.id, QueryRecord(query_type="price"))
    store.end_session(session.id, "completed", archive=False)
    return str(session.id)


def poison(session_id: str) -> None:
    """Data Postgres refuses, as an older writer could have left it: an inet with a zone id."""
    get_redis().hset(skeys.meta(session_id), "ip", "fe80::1%eth0")


def live_keys(prefix):
    return sorted(get_redis().scan_iter(match=f"{prefix}:*:s:*"))


@pytest.mark.django_db
def test_an_unwritable_session_is_quarantined_not_left_to_expire(store, redis_prefix):
    good = [ended_session(store) for _ in range(3)]
    bad = ended_session(store, user_id="u-bad")
    poison(bad)
    counts = archive.archive_due_sessions(now=time.time() + HOUR)
    assert (counts["archived"], counts["failed"]) == (3, 1)
    assert set(Session.objects.values_list("id", flat=True)) == set(good)
    record = QuarantinedSession.objects.get(session_id=bad)
    assert "inet" in record.error
    assert record.user_id == "u-bad"
    snapshot = json.loads(record.snapshot)
    assert snapshot["meta"]["ip"] == "fe80::1%eth0"
    assert len(snapshot["events"]) == 2
    # It left Redis: nothing is retried forever or lost when the safety-net TTL passes.
    assert live_keys(redis_prefix) == []


@pytest.mark.django_db
def test_the_job_run_reports_the_failure_and_the_operations_page_shows_it(store, client, make_user):
    poison(ended_session(store))
    result = tasks.run_named_job("cleanup")
    assert result["outcome"] == JobRun.Outcome.FAILED
    assert result["counts"]["failed"] == 1
    assert "quarantine" in result["error"]

    client.force_login(make_user("analyst"))
    page = client.get(reverse("dashboard:operations")).content.decode()
    assert "Quarantined sessions" in page
    assert QuarantinedSession.objects.get().session_id in page
    assert "inet" in page


@pytest.mark.django_db
def test_one_bad_session_is_isolated_in_a_few_writes(store, monkeypatch):
    ids = [ended_session(store, queries=1) for _ in range(64)]
    poison(ids[37])
    calls = []
    real_write = archive._write

    def counting_write(snapshots, *args, **kwargs):
        calls.append(len(snapshots))
        return real_write(snapshots, *args, **kwargs)

    monkeypatch.setattr(archive, "_write", counting_write)
    counts = archive.archive_due_sessions(now=time.time() + HOUR, batch_size=64)
    assert (counts["archived"], counts["failed"]) == (63, 1)
    # Bisection: the full batch, two halves per level down to the bad one, and one cleaned
    # retry; not 64 single-session writes.
    assert len(calls) <= 2 * 6 + 2
    assert sum(calls) <= 64 * 3


@pytest.mark.django_db
def test_quarantining_again_counts_attempts(store):
    bad = ended_session(store)
    poison(bad)
    archive.archive_due_sessions(now=time.time() + HOUR)
    # The same id fails again later (e.g. re-created by a replay): one row, two attempts.
    bad_again = store.create_session(assets=["AAPL"])
    get_redis().rename(skeys.meta(str(bad_again.id)), skeys.meta(bad))
    get_redis().zadd(skeys.due(skeys.shard_of(bad)), {bad: 0})
    poison(bad)
    archive.archive_due_sessions(now=time.time() + HOUR)
    assert QuarantinedSession.objects.get(session_id=bad).attempts == 2


@pytest.mark.django_db
def test_a_delete_between_snapshot_and_write_wins(store, monkeypatch):
    doomed = ended_session(store)
    kept = ended_session(store)
    real_snapshot = archive._snapshot

    def snapshot_then_delete(client, session_ids):
        snapshots = real_snapshot(client, session_ids)
        assert store.delete_session(doomed) is True  # the DELETE the client got a 204 for
        return snapshots

    monkeypatch.setattr(archive, "_snapshot", snapshot_then_delete)
    counts = archive.archive_due_sessions(now=time.time() + HOUR)
    assert (counts["archived"], counts["deleted"]) == (1, 1)
    assert list(Session.objects.values_list("id", flat=True)) == [kept]
    assert DeletedSession.objects.filter(session_id=doomed).exists()


@pytest.mark.django_db(transaction=True)
def test_delete_racing_the_archiver_never_resurrects_the_session(store):
    for _ in range(15):
        session_id = ended_session(store, queries=5)
        barrier = threading.Barrier(2)
        answers = {}

        def delete(session_id=session_id, barrier=barrier, answers=answers):
            try:
                barrier.wait()
                answers["delete"] = store.delete_session(session_id)
            finally:
                connection.close()

        def run_archive(barrier=barrier):
            try:
                barrier.wait()
                archive.archive_due_sessions(now=time.time() + HOUR)
            finally:
                connection.close()

        threads = [threading.Thread(target=delete), threading.Thread(target=run_archive)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert answers["delete"] is True
        assert not Session.objects.filter(id=session_id).exists()
        assert not get_redis().exists(skeys.meta(session_id))


@pytest.mark.django_db
def test_retention_prunes_old_tombstones(store):
    from datetime import timedelta

    from django.utils import timezone

    DeletedSession.objects.create(session_id="old", deleted_at=timezone.now() - timedelta(days=3))
    DeletedSession.objects.create(session_id="new", deleted_at=timezone.now())
    assert archive.delete_old_archived_sessions()["tombstones"] >= 1
    remaining = set(DeletedSession.objects.values_list("session_id", flat=True))
    assert "new" in remaining and "old" not in remaining
