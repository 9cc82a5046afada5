"""Rollups that stay current: folded in by the archiver, equal to a from-scratch aggregate.

Also the histogram's error bound against percentile_cont over the raw rows.
"""

import random
import threading
import time
from datetime import datetime, timedelta
from datetime import time as dtime

import pytest
from django.db import connection
from django.utils import timezone

from sessions_app import analytics, archive, histogram
from sessions_app.metrics import (
    ADDITIVE_COLUMNS,
    USER_TOP_SCALE,
    aggregate_sql,
    compute_daily_metrics,
)
from sessions_app.models import DailyMetric, Session, UserDailyMetric
from sessions_app.store import QueryRecord
from tests.factories import archived_sessions

QUERY_TYPES = ("price", "news", "technical", "fundamentals", "options")


def rollup_state() -> dict:
    """{(day, type): additive columns, histogram as text, query types} of the stored rollups."""
    columns = ", ".join(ADDITIVE_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT day, session_type, {columns}, duration_hist::text, query_type_counts "
            "FROM sessions_app_dailymetric WHERE sessions_started > 0"
        )
        return {(row[0], row[1]): _normalise(row[2:]) for row in cursor.fetchall()}


def scratch_state() -> dict:
    """The same, aggregated from scratch over every raw archived session."""
    ctes, select = aggregate_sql("true")
    columns = ", ".join(ADDITIVE_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {ctes} SELECT day, session_type, {columns}, duration_hist::text, "
            f"query_type_counts FROM ({select}) fresh",
            {"tz": timezone.get_current_timezone_name()},
        )
        return {(row[0], row[1]): _normalise(row[2:]) for row in cursor.fetchall()}


_USER_STATE_COLUMNS = (
    f"user_id, day, session_type, {', '.join(ADDITIVE_COLUMNS)}, duration_hist::text, "
    "query_type_counts, top_assets, tag_counts, first_session_at, last_activity_at"
)


def user_rollup_state() -> dict:
    """{(user, day, type): every UserDailyMetric column} of the rows that hold sessions."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_USER_STATE_COLUMNS} FROM sessions_app_userdailymetric "
            "WHERE sessions_started > 0"
        )
        return {row[:3]: _normalise_user(row[3:]) for row in cursor.fetchall()}


def user_scratch_state() -> dict:
    """The same, aggregated from scratch per (user, day, type) over every raw session."""
    ctes, select = aggregate_sql("true", top_scale=USER_TOP_SCALE, per_user=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {ctes} SELECT {_USER_STATE_COLUMNS} FROM ({select}) fresh",
            {"tz": timezone.get_current_timezone_name()},
        )
        return {row[:3]: _normalise_user(row[3:]) for row in cursor.fetchall()}


def _normalise_user(values) -> tuple:
    *numbers, hist, qtypes, assets, tags, first, last = values
    return (*(round(float(v), 6) for v in numbers), hist, qtypes, assets, tags, first, last)


def _normalise(values) -> tuple:
    *numbers, hist, qtypes = values
    return (*(round(float(v), 6) for v in numbers), hist, qtypes)


def make_ended_sessions(store, n: int, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(n):
        session = store.create_session(
            assets=[rng.choice(["AAPL", "MSFT", "BTC"])],
            session_type=rng.choice(["equity", "crypto", "macro"]),
            user_id=f"u{i % 5}",
            tags=rng.sample(["earnings", "risk", "tech"], rng.randint(0, 2)),
        )
        for _ in range(rng.randint(0, 4)):
            store.add_query(
                session.id,
                QueryRecord(query_type=rng.choice(QUERY_TYPES), cache_hit=rng.random() < 0.5),
            )
        store.record_tool_call(
            session.id, tool_name="t", tokens_in=rng.randint(0, 50), cost=rng.random()
        )
        store.end_session(session.id, rng.choice(["completed", "failed"]), archive=False)


def run_together(targets) -> None:
    """Run each callable in its own thread (and database connection) at the same moment."""
    barrier = threading.Barrier(len(targets))
    errors = []

    def work(target):
        try:
            barrier.wait()
            target()
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_rollups_stay_exact_under_concurrent_archiving_and_recomputation(store):
    make_ended_sessions(store, 120, seed=1)
    today = timezone.localdate()

    def recompute():
        for _ in range(5):
            compute_daily_metrics(today, today)

    run_together(
        [
            lambda: archive.archive_due_sessions(batch_size=7),
            lambda: archive.archive_due_sessions(batch_size=11),
            lambda: archive.archive_due_sessions(batch_size=5),
            recompute,
        ]
    )
    assert Session.objects.count() == 120
    assert rollup_state() == scratch_state()
    assert user_rollup_state() == user_scratch_state()

    # A re-run archives nothing twice; a recompute gives the same rows.
    archive.archive_due_sessions()
    compute_daily_metrics(today, today)
    assert rollup_state() == scratch_state()
    assert user_rollup_state() == user_scratch_state()


@pytest.mark.django_db(transaction=True)
def test_user_rollups_stay_exact_under_concurrent_archiving_recompute_and_deletes(store):
    make_ended_sessions(store, 150, seed=5)
    today = timezone.localdate()
    deleted: list = []

    def recompute():
        for _ in range(4):
            compute_daily_metrics(today, today)

    def delete_some():
        # Deletes on request while batches commit: whatever is archived by now, a few at a time.
        for _ in range(2000):
            ids = list(Session.objects.order_by("?").values_list("id", flat=True)[:3])
            deleted.append(archive.delete_archived_sessions(ids))
            if sum(deleted) >= 24:
                break
            time.sleep(0.005)

    run_together(
        [
            lambda: archive.archive_due_sessions(batch_size=9),
            lambda: archive.archive_due_sessions(batch_size=13),
            recompute,
            delete_some,
        ]
    )
    archive.archive_due_sessions()
    assert Session.objects.count() == 150 - sum(deleted)
    assert sum(deleted) > 0
    assert user_rollup_state() == user_scratch_state()
    assert rollup_state() == scratch_state()
    # Totals per user agree with the raw rows too (what the user page reads).
    for user in ("u0", "u3"):
        raw = Session.objects.filter(user_id=user)
        stats = analytics.get_session_stats(user_id=user, days=1)
        assert stats["archived_sessions"] == raw.count()
        assert stats["total_queries"] == sum(raw.values_list("query_count", flat=True))


@pytest.mark.django_db
def test_rerun_after_a_crash_does_not_count_a_session_twice(store, monkeypatch):
    make_ended_sessions(store, 10, seed=2)
    # The batch commits, then the process dies before Redis forgets the sessions.
    monkeypatch.setattr(archive, "_forget", lambda client, snapshots: None)
    archive.archive_due_sessions(now=timezone.now().timestamp())
    monkeypatch.undo()
    archive.archive_due_sessions(now=timezone.now().timestamp() + archive.CLAIM_LEASE_SECONDS + 1)
    assert Session.objects.count() == 10
    assert rollup_state() == scratch_state()
    assert sum(m.sessions_started for m in DailyMetric.objects.all()) == 10


@pytest.mark.django_db
def test_retention_keeps_rollups_and_recompute_of_kept_days_matches(store):
    today = timezone.localdate()
    old, kept = today - timedelta(days=40), today - timedelta(days=3)

    def at(day, hour):
        return timezone.make_aware(datetime.combine(day, dtime(hour)))

    archived_sessions(
        [
            {"created_at": at(old, 10), "archived_at": at(old, 11), "duration_seconds": 50},
            {"created_at": at(kept, 10), "archived_at": at(kept, 11), "duration_seconds": 70},
            {"created_at": at(kept, 12), "archived_at": at(kept, 13), "session_type": "macro"},
        ]
    )
    before = rollup_state()
    assert archive.delete_old_archived_sessions()["sessions"] == 1
    # The rollup of the retired day keeps its numbers; the kept days still match raw rows.
    assert rollup_state() == before
    compute_daily_metrics(kept, today)
    assert {k: v for k, v in rollup_state().items() if k[0] >= kept} == scratch_state()
    assert analytics.get_session_stats(days=60)["archived_sessions"] == 3


@pytest.mark.django_db
def test_percentiles_over_a_range_are_within_the_histograms_error():
    rng = random.Random(3)
    today = timezone.localdate()
    specs = [
        {
            "created_at": timezone.make_aware(
                datetime.combine(today - timedelta(days=rng.randint(1, 20)), dtime(12))
            ),
            "duration_seconds": round(rng.lognormvariate(5.5, 1.6), 3),
            "session_type": rng.choice(["equity", "crypto"]),
        }
        for _ in range(3000)
    ]
    archived_sessions(specs)
    stats = analytics.get_session_stats(days=30)
    assert stats["percentiles"] == "histogram"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) "
            "WITHIN GROUP (ORDER BY duration_seconds) FROM sessions_app_session"
        )
        exact = cursor.fetchone()[0]
    for name, value in zip(("p50", "p95", "p99"), exact, strict=True):
        got = stats[f"duration_{name}_seconds"]
        # Rounded to 0.01 s on output, hence the absolute slack.
        assert abs(got - value) <= histogram.RELATIVE_ERROR * value + 0.01, (name, got, value)
    # The Python reading of the same histogram agrees with SQL's.
    counts = histogram.build(spec["duration_seconds"] for spec in specs)
    assert stats["duration_p95_seconds"] == round(histogram.quantile(counts, 0.95), 2)


def test_histogram_buckets_bound_the_relative_error():
    for value in (0.011, 0.5, 1, 59.9, 600, 3600.5, 86400, 1e6):
        estimate = histogram.bucket_value(histogram.bucket(value))
        assert abs(estimate - value) <= histogram.RELATIVE_ERROR * value + 1e-12
    assert histogram.bucket(0) == histogram.bucket(-1) == histogram.bucket(0.01) == 1
    assert histogram.quantile({}, 0.5) is None


@pytest.mark.django_db
def test_a_delete_on_request_takes_the_session_out_of_the_rollups(store):
    make_ended_sessions(store, 12, seed=4)
    archive.archive_due_sessions()
    ids = list(Session.objects.values_list("id", flat=True))
    assert store.delete_session(ids[0]) is True  # one by the store's delete
    assert archive.delete_archived_sessions(ids[1:4]) == 3  # three by the admin's bulk delete
    assert Session.objects.count() == 8
    assert rollup_state() == scratch_state()
    # The user rows lose the deleted sessions too, "last active" included.
    assert user_rollup_state() == user_scratch_state()
    assert UserDailyMetric.objects.filter(sessions_started=0).count() <= 5


@pytest.mark.django_db
def test_histogram_subtraction_keeps_arrays_trimmed():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT fs_hist_sub('[3:6]={1,2,0,4}'::int[], '[3:4]={1,2}'::int[])::text, "
            "fs_hist_sub('[3:4]={1,2}'::int[], '[3:4]={1,2}'::int[])"
        )
        assert cursor.fetchone() == ("[6:6]={4}", None)
