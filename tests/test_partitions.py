"""Archive partitions by day: creation ahead and on demand, late sessions, retirement by drop,
shorter per-type retention by bounded delete, idempotent re-runs, conversion of old tables."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from sessions_app import archive
from sessions_app.archive import partitions
from sessions_app.models import (
    DailyMetric,
    RetentionPolicy,
    Session,
    TimelineChunk,
    UserDailyMetric,
)
from sessions_app.store import keys as skeys
from tests.factories import archived_sessions
from tests.test_archive import busy_session, fresh_policies  # noqa: F401 - autouse fixture

pytestmark = pytest.mark.django_db

HOUR = 3600


def exists(table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [table])
        return cursor.fetchone()[0]


def homes(model, id_field: str = "id") -> dict[str, set[str]]:
    """{row id: partition tables holding it}."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {id_field}, tableoid::regclass::text FROM {table}")
        found: dict[str, set[str]] = {}
        for row_id, home in cursor.fetchall():
            found.setdefault(row_id, set()).add(home)
        return found


def both_tables(day) -> list[str]:
    return [partitions.partition_table(model, day) for model in (Session, TimelineChunk)]


def test_partitions_are_created_ahead_once():
    later = timezone.now() + timedelta(days=400)  # days no migration created
    first = partitions.day_of(later)
    assert not any(exists(t) for t in both_tables(first))
    assert partitions.create_ahead(later, days=3) == 4
    for n in range(4):
        assert all(exists(t) for t in both_tables(first + timedelta(days=n)))
    assert not exists(both_tables(first + timedelta(days=4))[0])
    assert partitions.create_ahead(later, days=3) == 0  # nothing missing


def test_archiving_into_a_day_without_a_partition(store, redis_prefix, monkeypatch, settings):
    settings.REDIS_SHARDS = 1
    session = busy_session(store, ttl_hours=0.01)
    future = timezone.now() + timedelta(days=120)  # the clock ahead of the maintenance job
    day = partitions.day_of(future)
    assert not exists(both_tables(day)[0])
    monkeypatch.setattr(timezone, "now", lambda: future)

    assert archive.archive_due_sessions(now=future.timestamp() + HOUR)["archived"] == 1
    row = Session.objects.get(id=session.id)
    assert partitions.day_of(row.archived_at) == day
    assert homes(Session)[row.id] == {partitions.partition_table(Session, day)}
    assert homes(TimelineChunk, "session_id")[row.id] == {
        partitions.partition_table(TimelineChunk, day)
    }


def test_a_late_session_lands_in_its_day_and_leaves_with_it(store, redis_prefix, settings):
    """A session stamped for archive long ago (a worker that crashed after the claim, restored
    data) is written into its own old day, created for it, and retired with that day."""
    settings.REDIS_SHARDS = 1
    now = timezone.now()
    RetentionPolicy.objects.filter(session_type="").update(retention_days=30)
    recent = archived_sessions([{"archived_at": now - timedelta(days=2), "queries": [{}]}])[0]
    late = busy_session(store, ttl_hours=0.01)
    stamped = now - timedelta(days=40)
    assert not exists(both_tables(partitions.day_of(stamped))[0])
    store.redis.hset(skeys.meta(str(late.id)), "archived_at", f"{stamped.timestamp():.6f}")

    assert archive.archive_due_sessions(now=time.time() + HOUR)["archived"] == 1
    row = Session.objects.get(id=late.id)
    assert abs(row.archived_at - stamped) < timedelta(milliseconds=1)
    old_day = partitions.day_of(stamped)
    assert homes(TimelineChunk, "session_id")[row.id] == {
        partitions.partition_table(TimelineChunk, old_day)
    }

    counts = archive.delete_old_archived_sessions(now=now)
    assert counts["dropped_sessions"] == 1 and counts["dropped_days"] == 1
    assert not any(exists(t) for t in both_tables(old_day))
    assert list(Session.objects.values_list("id", flat=True)) == [recent.id]
    assert set(homes(TimelineChunk, "session_id")) == {recent.id}


def test_drop_keeps_days_of_the_longest_retention_and_shorter_types_use_bounded_delete():
    RetentionPolicy.objects.filter(session_type="").update(retention_days=30)
    RetentionPolicy.objects.create(session_type="crypto", retention_days=7)
    RetentionPolicy.objects.create(session_type="macro", retention_days=90)
    now = timezone.now()

    def spec(session_type, days_ago):
        return {
            "session_type": session_type,
            "archived_at": now - timedelta(days=days_ago),
            "created_at": now - timedelta(days=days_ago, hours=1),
            "queries": [{}],
        }

    plan = {  # (type, days ago): gone?
        ("macro", 100): True,  # past the longest retention: its day is dropped
        ("equity", 100): True,
        ("macro", 40): False,  # kept by macro's 90 days ...
        ("equity", 40): True,  # ... so equity's expired rows there go by bounded delete
        ("crypto", 10): True,
        ("crypto", 5): False,
        ("equity", 20): False,
    }
    sessions = archived_sessions([spec(*key) for key in plan])
    by_key = dict(zip(plan, sessions, strict=True))
    day_100, day_40 = (partitions.day_of(now - timedelta(days=d)) for d in (100, 40))

    counts = archive.delete_old_archived_sessions(now=now, batch_size=2)
    assert counts["dropped_days"] == 1 and counts["dropped_sessions"] == 2
    assert counts["sessions"] == 4 and counts["events"] == 2
    assert not any(exists(t) for t in both_tables(day_100))
    assert all(exists(t) for t in both_tables(day_40))
    kept = {s.id for key, s in by_key.items() if not plan[key]}
    assert set(Session.objects.values_list("id", flat=True)) == kept
    assert set(homes(TimelineChunk, "session_id")) == kept
    again = archive.delete_old_archived_sessions(now=now)
    assert again["sessions"] == 0 and again["dropped_days"] == 0


def test_rerun_after_a_crash_on_another_day_writes_one_row_counted_once(
    store, redis_prefix, monkeypatch, settings
):
    """The archive time is stamped once: a re-run days later upserts the same row in the same
    partition, and the rollups count the session once."""
    settings.REDIS_SHARDS = 1
    session = busy_session(store, ttl_hours=0.01)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("worker killed after the commit")

    monkeypatch.setattr(archive, "_forget", crash)
    with pytest.raises(KeyboardInterrupt):
        archive.archive_due_sessions(now=time.time() + HOUR)
    first = Session.objects.get(id=session.id).archived_at
    counted = DailyMetric.objects.aggregate(n=Sum("sessions_started"))["n"]
    assert counted == 1
    monkeypatch.undo()

    later = timezone.now() + timedelta(days=3)
    monkeypatch.setattr(timezone, "now", lambda: later)
    counts = archive.archive_due_sessions(now=later.timestamp() + HOUR)
    assert counts["archived"] == 1
    assert list(Session.objects.filter(id=session.id).values_list("archived_at", flat=True)) == [
        first
    ]
    assert len(homes(Session)[session.id]) == 1
    chunks = TimelineChunk.objects.filter(session_id=session.id)
    assert chunks.count() == 1 and chunks.get().archived_at == first
    assert DailyMetric.objects.aggregate(n=Sum("sessions_started"))["n"] == 1


def test_conversion_of_unpartitioned_tables_keeps_rows_and_index_names():
    schema = "old_shape"
    s_table, c_table = Session._meta.db_table, TimelineChunk._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
        # The tables as migration 0016 left them: one primary key on id, a foreign key.
        cursor.execute(
            f"CREATE TABLE {schema}.{s_table} (LIKE public.{s_table} INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS)"
        )
        cursor.execute(f"ALTER TABLE {schema}.{s_table} ALTER archived_at DROP NOT NULL")
        cursor.execute(f"ALTER TABLE {schema}.{s_table} ADD PRIMARY KEY (id)")
        cursor.execute(f"CREATE INDEX session_archived_idx ON {schema}.{s_table} (archived_at)")
        cursor.execute(
            f"CREATE TABLE {schema}.{c_table} (session_id varchar(128) NOT NULL "
            f"REFERENCES {schema}.{s_table} (id) DEFERRABLE INITIALLY DEFERRED, "
            "chunk integer NOT NULL, events jsonb NOT NULL, PRIMARY KEY (session_id, chunk))"
        )
        base = datetime(2026, 3, 1, 12, tzinfo=UTC)
        for n, archived_at in enumerate([base, base + timedelta(days=1), base, None]):
            cursor.execute(
                f"INSERT INTO {schema}.{s_table} (id, user_id, session_type, status, assets, "
                "tags, purpose, source, device, created_at, last_activity_at, expires_at, "
                "ended_at, archived_at, duration_seconds, context, intermediate_results, "
                "preferences, metadata, query_count, cache_hits, error_count, message_count, "
                "tool_call_count, total_execution_ms, tokens_in, tokens_out, cost, "
                "query_type_counts) VALUES (%s, 'u', 'equity', 'completed', '{}', '{}', '', "
                "'', '', %s, %s, %s, %s, %s, 0, '{}', '{}', '{}', '{}', 1, 0, 0, 0, 0, 0, 0, "
                "0, 0, '{}')",
                [f"s{n}", base, base, base, base + timedelta(days=5), archived_at],
            )
            for chunk in range(2):
                cursor.execute(
                    f"INSERT INTO {schema}.{c_table} VALUES (%s, %s, %s)",
                    [f"s{n}", chunk, f'[{{"seq": {chunk}}}]'],
                )

        result = partitions.convert_to_partitioned(cursor, schema, today=base.date())
        assert result["sessions"] == 4 and result["chunks"] == 8

        cursor.execute(
            f"SELECT id, archived_at, tableoid::regclass::text FROM {schema}.{s_table} ORDER BY id"
        )
        rows = cursor.fetchall()
        day_table = f"{schema}.{s_table}_p%Y%m%d"
        assert [(r[0], r[1], r[2]) for r in rows] == [
            ("s0", base, base.strftime(day_table)),
            ("s1", base + timedelta(days=1), (base + timedelta(days=1)).strftime(day_table)),
            ("s2", base, base.strftime(day_table)),
            # Never given an archive time: its end.
            ("s3", base + timedelta(days=5), (base + timedelta(days=5)).strftime(day_table)),
        ]
        cursor.execute(
            f"SELECT c.session_id, c.archived_at = s.archived_at FROM {schema}.{c_table} c "
            f"JOIN {schema}.{s_table} s ON s.id = c.session_id"
        )
        pairs = cursor.fetchall()
        assert len(pairs) == 8 and all(same for _, same in pairs)
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace AND relkind = 'I'",
            [schema],
        )
        indexes = {row[0] for row in cursor.fetchall()}
        assert {"session_archived_idx", f"{s_table}_pkey", f"{c_table}_pkey"} <= indexes
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
            "AND connamespace = %s::regnamespace",
            [schema],
        )
        assert cursor.fetchone()[0] == 0
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'p' "
            "AND conrelid = %s::regclass",
            [f"{schema}.{s_table}"],
        )
        assert cursor.fetchone()[0] == "PRIMARY KEY (id, archived_at)"


def test_the_day_the_horizon_cuts_through_is_trimmed_exactly():
    """The longest retention's own expired rows in a day not yet whole past it still go."""
    RetentionPolicy.objects.filter(session_type="").update(retention_days=30)
    now = timezone.now()
    horizon = now - timedelta(days=30)
    _gone, kept = archived_sessions(
        [
            {"archived_at": horizon - timedelta(minutes=1), "queries": [{}]},
            {"archived_at": horizon + timedelta(minutes=1), "queries": [{}]},
        ]
    )
    counts = archive.delete_old_archived_sessions(now=now)
    assert counts["sessions"] == 1
    assert list(Session.objects.values_list("id", flat=True)) == [kept.id]
    assert set(homes(TimelineChunk, "session_id")) == {kept.id}


def test_timeline_reads_given_the_archive_time_search_only_that_day():
    from sessions_app.archive import timeline
    from tests.factories import archived_session

    session = archived_session(queries=[{}, {}], messages=[("user", "hi")])
    whole = timeline.read_all(session.id)
    assert len(whole) == 3
    assert timeline.read_all(session.id, session.archived_at) == whole
    assert timeline.read_last(session.id, 2, session.archived_at) == whole[-2:]
    assert timeline.read_last_queries(session.id, 5, session.archived_at) == whole[:2]
    # Another day's partition does not hold it: the archive time is really applied.
    assert timeline.read_all(session.id, session.archived_at + timedelta(days=1)) == []


def test_a_batch_spanning_archive_days_is_folded_whole(store, redis_prefix, settings):
    """The fold searches only the batch's archive days: a batch holding a session stamped
    weeks ago and fresh ones still counts every session, per day and per user."""
    settings.REDIS_SHARDS = 1
    sessions = [busy_session(store, ttl_hours=0.01) for _ in range(3)]
    stamped = timezone.now() - timedelta(days=20)
    store.redis.hset(skeys.meta(str(sessions[0].id)), "archived_at", f"{stamped.timestamp():.6f}")

    assert archive.archive_due_sessions(now=time.time() + HOUR)["archived"] == 3
    days = {row.archived_at.date() for row in Session.objects.all()}
    assert len(days) == 2
    assert DailyMetric.objects.aggregate(n=Sum("sessions_started"))["n"] == 3
    assert UserDailyMetric.objects.aggregate(n=Sum("sessions_started"))["n"] == 3
