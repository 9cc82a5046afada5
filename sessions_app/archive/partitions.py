"""Daily partitions of the archive: sessions and their timeline chunks, by `archived_at`.

Both tables are range-partitioned by archive day (UTC), in lockstep: a session and its chunks
share `archived_at`, so they live in the same day and leave together. psqlextra's partitioning
manager creates days ahead and drops expired ones (a DROP of a day's tables: no row is
deleted, so the WAL stays in kB whatever the day holds). Every insert path makes sure its
days exist first (`ensure_partitions`), so a write into a day nobody created yet (a clock ahead
of the maintenance job, a late or restored session, demo data in the past) never fails; there
is no DEFAULT partition, so a drop never has to move or delete rows.
"""

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from django.db import connection, transaction
from django.utils import timezone
from psqlextra.partitioning import (
    PostgresPartitioningManager,
    PostgresTimePartition,
    PostgresTimePartitionSize,
)
from psqlextra.partitioning.config import PostgresPartitioningConfig
from psqlextra.partitioning.constants import AUTO_PARTITIONED_COMMENT
from psqlextra.partitioning.current_time_strategy import PostgresCurrentTimePartitioningStrategy

from sessions_app.models import Session, TimelineChunk

# Days created ahead of today by the maintenance step: it runs daily (the retention job), so a
# missed run or two still leaves the archiver writing into existing partitions.
AHEAD_DAYS = 7
# Partition names: <table>_pYYYYMMDD, sortable and parseable.
NAME_FORMAT = "p%Y%m%d"
PARTITIONED = (Session, TimelineChunk)
# Serialises partition DDL between the maintenance job and on-demand creation (an arbitrary
# constant of our own; the archiver's tombstone locks use hashtext keys of session ids).
_DDL_LOCK = 7_343_201_519
_DAY = PostgresTimePartitionSize(days=1)
# How long partition DDL waits for the tables' lock (see _lock).
DDL_LOCK_TIMEOUT_MS = 5000


def day_of(moment: datetime) -> date:
    """The UTC day a timestamp's row is stored under."""
    return moment.astimezone(UTC).date()


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def partition_table(model, day: date) -> str:
    """The table holding `model`'s rows archived on `day`."""
    return partition_table_name(model._meta.db_table, day)


def partition_table_name(table: str, day: date) -> str:
    """psqlextra's name for `table`'s partition of `day` (its create_partition_table_name)."""
    return f"{table}_{day:{NAME_FORMAT}}"


class _Days(PostgresCurrentTimePartitioningStrategy):
    """One partition per UTC day: `count` days from `now` on; to delete, exactly `expired`.

    psqlextra's own strategy reads the wall clock and stops deleting at the first missing
    day; ours takes `now` (tests, the bench) and the expired days found in the catalog, so a
    gap (a day without archives) never keeps older days alive.
    """

    def __init__(self, now: datetime, count: int, expired: Iterable[date] = ()):
        super().__init__(size=_DAY, count=count)
        self.name_format = NAME_FORMAT
        self.now = now
        self.expired = sorted(expired, reverse=True)

    def get_start_datetime(self) -> datetime:
        return self.now.astimezone(UTC)

    def to_delete(self):
        for day in self.expired:
            yield PostgresTimePartition(
                start_datetime=_start(day), size=_DAY, name_format=NAME_FORMAT
            )


def _manager(now: datetime, count: int, expired: dict[str, set[date]] | None = None):
    """psqlextra's manager for both tables; `expired`: {table: days to drop}."""
    expired = expired or {}
    return PostgresPartitioningManager(
        [
            # Plain models carrying `_partitioning_meta` (see models.PartitionedByArchiveDay).
            PostgresPartitioningConfig(
                cast(Any, model), _Days(now, count, expired.get(model._meta.db_table, ()))
            )
            for model in PARTITIONED
        ]
    )


def existing_days() -> list[date]:
    """Days that have a session partition, oldest first."""
    return sorted(_partition_days()[Session._meta.db_table])


def _partition_days() -> dict[str, set[date]]:
    """{partitioned table: days of its partitions}."""
    tables = [model._meta.db_table for model in PARTITIONED]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT parent.relname, child.relname FROM pg_inherits "
            "JOIN pg_class parent ON parent.oid = pg_inherits.inhparent "
            "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
            "WHERE parent.relname = ANY(%s) AND parent.relnamespace = child.relnamespace "
            "AND parent.relnamespace = current_schema()::regnamespace",
            [tables],
        )
        rows = cursor.fetchall()
    days: dict[str, set[date]] = {table: set() for table in tables}
    for parent, child in rows:
        try:
            days[parent].add(datetime.strptime(child[len(parent) + 1 :], NAME_FORMAT).date())
        except ValueError:  # not one of ours
            continue
    return days


def ensure_partitions(moments: Iterable[datetime | None]) -> int:
    """Create the missing day partitions for rows archived at these moments; days created.

    One catalog query when they all exist (the usual case). Creation runs under an advisory
    lock, in its own short transaction when the caller has none, so it never holds the
    tables' lock for the length of an archive write.
    """
    days = sorted({day_of(moment) for moment in moments if moment is not None})
    if not days:
        return 0
    names = [partition_table(model, day) for day in days for model in PARTITIONED]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM unnest(%s::text[]) AS t(name) WHERE to_regclass(name) IS NULL",
            [names],
        )
        if not cursor.fetchone()[0]:
            return 0
    created = 0
    with transaction.atomic():
        _lock()
        present = _partition_days()
        with connection.schema_editor(atomic=False) as editor:
            for day in days:
                for model in PARTITIONED:
                    if day in present[model._meta.db_table]:
                        continue
                    start = _start(day)
                    editor.add_range_partition(  # type: ignore[attr-defined]
                        model,
                        name=f"{day:{NAME_FORMAT}}",
                        from_values=start.isoformat(),
                        to_values=(start + timedelta(days=1)).isoformat(),
                        comment=AUTO_PARTITIONED_COMMENT,
                    )
                    created += model is Session
    return created


def _lock() -> None:
    """Serialise partition DDL; and bound its wait for the tables' lock, which a long read
    holds: a CREATE or DROP of a partition waiting behind it would queue every later query
    on the table. A timeout fails this attempt (the archiver retries the batch, the job its
    run) instead of stalling the dashboard."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_DDL_LOCK])
        cursor.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT_MS}ms'")


def create_ahead(now: datetime | None = None, days: int = AHEAD_DAYS) -> int:
    """Create the partitions of today and the next `days` days that are missing; days created.

    psqlextra's partitioning manager plans and applies the creations.
    """
    now = now or timezone.now()
    with transaction.atomic():
        _lock()
        plan = _manager(now, days + 1).plan(skip_delete=True)
        plan.apply()
    return sum(len(p.creations) for p in plan.model_plans if p.config.model is Session)


def expired_days(keep_days: int, now: datetime | None = None) -> list[date]:
    """Days whose every row is older than `keep_days` days before `now`: droppable whole."""
    horizon = (now or timezone.now()) - timedelta(days=keep_days)
    days = _partition_days()
    every = set().union(*days.values())
    return sorted(day for day in every if _start(day) + timedelta(days=1) <= horizon)


def drop_expired(keep_days: int, now: datetime | None = None) -> dict:
    """Drop the day partitions (sessions and chunks) entirely older than `keep_days`.

    {"days": days dropped, "sessions": the sessions they held}. Through psqlextra's manager:
    one DROP TABLE per day and table, in one transaction; only partitions it created (its
    comment) are dropped.
    """
    now = now or timezone.now()
    counts = {"days": 0, "sessions": 0}
    with transaction.atomic():
        _lock()
        days = expired_days(keep_days, now)
        if not days:
            return counts
        present = _partition_days()
        with connection.cursor() as cursor:
            for day in days:
                if day in present[Session._meta.db_table]:
                    table = partition_table(Session, day)
                    cursor.execute(f'SELECT count(*) FROM "{table}"')  # noqa: S608 - our name
                    counts["sessions"] += cursor.fetchone()[0]
        doomed = {table: held & set(days) for table, held in present.items()}
        plan = _manager(now, 0, doomed).plan(skip_create=True)
        plan.apply()
    counts["days"] = len(days)
    return counts


# ---- conversion of the unpartitioned tables (migration 0017) ---------------------------------


def convert_to_partitioned(cursor, schema: str = "public", today: date | None = None) -> dict:
    """Turn the unpartitioned session and timeline chunk tables of `schema` into partitioned
    ones, keeping every row, check constraint, default and index name; {"days", "sessions",
    "chunks"}.

    New tables partitioned by archive day are filled with INSERT ... SELECT (no index yet, so
    rows go in at copy speed), the old ones dropped, the new ones renamed; then the primary
    keys (now including archived_at) and the old indexes are created under their old names.
    Foreign keys to or from these tables are dropped: a partitioned table has no unique `id`
    to reference. Sessions never given an archive time get their end (or last activity).
    Runs in the caller's transaction (the migration's).
    """
    today = today or timezone.now().date()
    s_table, c_table = Session._meta.db_table, TimelineChunk._meta.db_table

    def q(name: str) -> str:
        return f'"{schema}"."{name}"'

    # Deferred foreign key checks still pending would block dropping the constraints.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cursor.execute(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype = 'f' "
        "AND (confrelid = ANY(%(t)s::regclass[]) OR conrelid = ANY(%(t)s::regclass[]))",
        {"t": [q(s_table), q(c_table)]},
    )
    for table, name in cursor.fetchall():
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    # Indexes other than the primary keys, replayed verbatim once the old tables are gone.
    cursor.execute(
        "SELECT indexdef FROM pg_indexes i WHERE schemaname = %s AND tablename = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = "
        "format('%%I.%%I', i.schemaname, i.indexname)::regclass AND c.contype IN ('p', 'u'))",
        [schema, [s_table, c_table]],
    )
    index_defs = [row[0] for row in cursor.fetchall()]
    cursor.execute(
        f"UPDATE {q(s_table)} SET archived_at = COALESCE(ended_at, last_activity_at, created_at) "  # noqa: S608
        "WHERE archived_at IS NULL"
    )
    like = (
        "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS "
        "INCLUDING STATISTICS INCLUDING COMPRESSION"
    )
    cursor.execute(
        f"CREATE TABLE {q(s_table + '__partitioned')} (LIKE {q(s_table)} {like}) "
        "PARTITION BY RANGE (archived_at)"
    )
    cursor.execute(
        f"ALTER TABLE {q(s_table + '__partitioned')} ALTER COLUMN archived_at SET NOT NULL"
    )
    cursor.execute(
        f"CREATE TABLE {q(c_table + '__partitioned')} (LIKE {q(c_table)} {like}, "
        "archived_at timestamp with time zone NOT NULL) PARTITION BY RANGE (archived_at)"
    )
    cursor.execute(
        f"SELECT DISTINCT (archived_at AT TIME ZONE 'UTC')::date FROM {q(s_table)}"  # noqa: S608
    )
    days = {row[0] for row in cursor.fetchall()}
    days |= {today + timedelta(days=n) for n in range(AHEAD_DAYS + 1)}
    for day in sorted(days):
        start = _start(day)
        for table in (s_table, c_table):
            name = partition_table_name(table, day)
            cursor.execute(
                f"CREATE TABLE {q(name)} PARTITION OF {q(table + '__partitioned')} "
                "FOR VALUES FROM (%s) TO (%s)",
                [start, start + timedelta(days=1)],
            )
            cursor.execute(f"COMMENT ON TABLE {q(name)} IS %s", [AUTO_PARTITIONED_COMMENT])
    cursor.execute(f"INSERT INTO {q(s_table + '__partitioned')} SELECT * FROM {q(s_table)}")  # noqa: S608
    sessions = cursor.rowcount
    cursor.execute(
        f"INSERT INTO {q(c_table + '__partitioned')} SELECT c.*, s.archived_at "  # noqa: S608
        f"FROM {q(c_table)} c JOIN {q(s_table)} s ON s.id = c.session_id"
    )
    chunks = cursor.rowcount
    for table in (c_table, s_table):
        cursor.execute(f"DROP TABLE {q(table)}")
        cursor.execute(f'ALTER TABLE {q(table + "__partitioned")} RENAME TO "{table}"')
    cursor.execute(
        f'ALTER TABLE {q(s_table)} ADD CONSTRAINT "{s_table}_pkey" PRIMARY KEY (id, archived_at)'
    )
    cursor.execute(
        f'ALTER TABLE {q(c_table)} ADD CONSTRAINT "{c_table}_pkey" '
        "PRIMARY KEY (session_id, chunk, archived_at)"
    )
    for definition in index_defs:
        cursor.execute(definition)
    cursor.execute(f"ANALYZE {q(s_table)}")
    cursor.execute(f"ANALYZE {q(c_table)}")
    return {"days": len(days), "sessions": sessions, "chunks": chunks}
