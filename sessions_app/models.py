"""Archived sessions, their timeline, retention policy, daily rollups, job history and API keys.

Live sessions are in Redis (see store.py); rows here are written by the archiver (archive.py).
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Collate, Lower
from django.utils import timezone
from psqlextra.models.options import PostgresPartitionedModelOptions
from psqlextra.types import PostgresPartitioningMethod

from sessions_app.domain import new_session_id

# Column sizes of the sums, chosen so in-spec values cannot overflow them (issue 11): a tool
# call's cost fits numeric(EVENT_COST_DIGITS, 6); a session's total fits with 10^8 calls at that
# maximum; a rollup's with 10^6 such sessions. The input limits derive from these fields.
EVENT_COST_DIGITS = 12
SESSION_COST_DIGITS = EVENT_COST_DIGITS + 8
ROLLUP_COST_DIGITS = SESSION_COST_DIGITS + 6
# Rollup tokens: numeric, since a day's sum of bigint session totals can exceed a bigint.
ROLLUP_TOKEN_DIGITS = 30


class SessionType(models.TextChoices):
    EQUITY = "equity", "Equity"
    CRYPTO = "crypto", "Crypto"
    PORTFOLIO = "portfolio", "Portfolio"
    COMPARATIVE = "comparative", "Comparative"
    MACRO = "macro", "Macro"
    AGENT = "agent", "Agent"


class SessionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    ABANDONED = "abandoned", "Abandoned"
    EXPIRED = "expired", "Expired"


# Statuses a client may end a session with (AIECS ends idle sessions as `expired` too).
END_STATUSES = (
    SessionStatus.COMPLETED,
    SessionStatus.FAILED,
    SessionStatus.ABANDONED,
    SessionStatus.EXPIRED,
)


class EventKind(models.TextChoices):
    QUERY = "query", "Query"
    MESSAGE = "message", "Message"
    TOOL_CALL = "tool_call", "Tool call"


class MessageRole(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"
    TOOL = "tool", "Tool"
    SYSTEM = "system", "System"


class ArchivedQuerySet(models.QuerySet):
    """Rows of a table partitioned by archive day: a bulk insert first makes sure its days'
    partitions exist, as save() does (the archiver and the demo writer, which use SQL, do the
    same)."""

    def bulk_create(self, objs, *args, **kwargs):
        from sessions_app.archive.partitions import ensure_partitions

        objs = list(objs)
        ensure_partitions(obj.archived_at for obj in objs)
        return super().bulk_create(objs, *args, **kwargs)


class PartitionedByArchiveDay(models.Model):
    """Base of the archive's tables: range-partitioned by `archived_at`, one partition per UTC
    day (archive/partitions.py), so retention drops whole days.

    The database's primary key includes `archived_at` (a partitioned table's unique indexes
    must hold its key), but Django keeps the model's own primary key: psqlextra's
    PostgresPartitionedModel would turn `Session.pk` into a composite key, which every pk
    lookup, admin URL and the chunks' foreign key rely on not being. `_partitioning_meta` is
    what psqlextra's partitioning manager and schema editor read.
    """

    _partitioning_meta = PostgresPartitionedModelOptions(
        method=PostgresPartitioningMethod.RANGE, key=["archived_at"]
    )

    objects = ArchivedQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        from sessions_app.archive.partitions import ensure_partitions

        archived_at = getattr(self, "archived_at", None)
        if archived_at is not None:
            ensure_partitions([archived_at])
        super().save(*args, **kwargs)


class Session(PartitionedByArchiveDay):
    """An analysis session that has left Redis: ended, expired or abandoned."""

    # Generated ids are UUIDv7 strings; callers may choose their own (validation.session_id).
    # "C" collation: byte order, the same order Redis and Python use for cursors.
    id = models.CharField(
        primary_key=True, max_length=128, default=new_session_id, editable=False, db_collation="C"
    )
    user_id = models.CharField(max_length=128, blank=True, default="")
    session_type = models.CharField(max_length=16, choices=SessionType.choices)
    status = models.CharField(max_length=16, choices=SessionStatus.choices)
    assets = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    purpose = models.TextField(blank=True, default="")
    source = models.CharField(max_length=64, blank=True, default="")
    device = models.CharField(max_length=64, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)

    created_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    # The partition key (archive/partitions.py): set once when the archiver first claims the
    # session, so a re-run after a crash writes the same row into the same day.
    archived_at = models.DateTimeField(default=timezone.now)
    # ended_at (or last activity) minus created_at, stored so percentiles aggregate in SQL.
    duration_seconds = models.FloatField(default=0)

    context = models.JSONField(default=dict, blank=True)
    intermediate_results = models.JSONField(default=dict, blank=True)
    preferences = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    query_count = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    message_count = models.PositiveIntegerField(default=0)
    tool_call_count = models.PositiveIntegerField(default=0)
    total_execution_ms = models.FloatField(default=0)
    tokens_in = models.BigIntegerField(default=0)
    tokens_out = models.BigIntegerField(default=0)
    # Sized for SESSION_COST_DIGITS: up to 10^8 tool calls at SessionEvent.cost's maximum fit.
    cost = models.DecimalField(max_digits=SESSION_COST_DIGITS, decimal_places=6, default=0)
    # {query_type: queries}, written at archive time so per-user and per-day questions never
    # read the events table.
    query_type_counts = models.JSONField(default=dict, blank=True)
    # AIECS counters (update_session(increment_requests=, add_processing_time=)) and the sum of
    # tool call durations, kept as the live session had them. Requests are not capped by the
    # event cap (a request adds no event): a bigint holds any count a session can reach.
    # Database defaults, so raw INSERT/COPY writers that predate them (demo, bench) still work.
    request_count = models.BigIntegerField(default=0, db_default=0)
    total_processing_time = models.FloatField(default=0, db_default=0)  # seconds
    tool_duration_ms = models.FloatField(default=0, db_default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("view_dashboard", "Can view the analytics dashboard"),
            ("export_sessions", "Can export sessions and metrics"),
            ("manage_sessions", "Can extend, end, archive and delete sessions"),
            ("run_jobs", "Can run background jobs now"),
        ]
        indexes = [
            # History browser default order and its keyset pagination; retention by age.
            models.Index(fields=["-created_at", "-id"], name="session_created_idx"),
            # User page and list_user_sessions(include_archived=True).
            models.Index(fields=["user_id", "-created_at"], name="session_user_created_idx"),
            # Type filter on history and the daily metrics rollup per (day, type).
            models.Index(fields=["session_type", "-created_at"], name="session_type_created_idx"),
            # Status filter on history.
            models.Index(fields=["status", "-created_at"], name="session_status_created_idx"),
            # Retention: archived sessions past their type's retention days.
            models.Index(fields=["archived_at"], name="session_archived_idx"),
            # Tag and asset filters (`tags @> ARRAY[...]`) and top-tags/top-assets rollups.
            GinIndex(fields=["tags"], name="session_tags_gin"),
            GinIndex(fields=["assets"], name="session_assets_gin"),
        ]

    def __str__(self) -> str:
        return f"{self.session_type} session {self.id} ({self.status})"


class SessionEvent(models.Model):
    """One entry of a session's timeline: a query, a message or a tool call."""

    # No index of its own: the unique (session, seq) index below serves every session_id lookup,
    # and one index less per event is what archive and retention throughput hang on.
    # No database constraint: sessions_app_session is partitioned, so `id` alone has no unique
    # index to reference.
    session = models.ForeignKey(
        Session,
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    # Position in the timeline from 0; unique per session so the archive upsert is idempotent.
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    occurred_at = models.DateTimeField()

    # Queries
    query_type = models.CharField(max_length=64, blank=True, default="")
    parameters = models.JSONField(default=dict, blank=True)
    result_summary = models.TextField(blank=True, default="")
    execution_ms = models.FloatField(null=True, blank=True)
    cache_hit = models.BooleanField(default=False)
    error = models.TextField(blank=True, default="")

    # Messages
    role = models.CharField(max_length=16, blank=True, default="", choices=MessageRole.choices)
    content = models.TextField(blank=True, default="")

    # Tool calls (and messages that belong to one)
    tool_name = models.CharField(max_length=128, blank=True, default="")
    invocation_id = models.CharField(max_length=128, blank=True, default="")
    duration_ms = models.FloatField(null=True, blank=True)
    tokens_in = models.IntegerField(default=0)
    tokens_out = models.IntegerField(default=0)
    cost = models.DecimalField(max_digits=EVENT_COST_DIGITS, decimal_places=6, default=0)

    class Meta:
        ordering = ["session", "seq"]
        constraints = [
            # Also the index for the detail page's timeline and for retention deletes.
            models.UniqueConstraint(fields=["session", "seq"], name="event_session_seq_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.seq} of {self.session_id}"


# Events per TimelineChunk row: a page read touches at most two rows, a 20-event session one.
TIMELINE_CHUNK_EVENTS = 500


class TimelineChunk(PartitionedByArchiveDay):
    """Events `chunk * TIMELINE_CHUNK_EVENTS` onwards of an archived session's timeline.

    `events` is the text of a JSON array of the events exactly as the live store kept them
    (`seq`, `kind`, `occurred_at` in epoch seconds, the kind's fields; blank fields may be
    absent). The archiver writes it by concatenating the Redis snapshot's JSON texts, and
    `archive/timeline.py` is the one reader: bulk writes and reads, no row or Python object per
    event in the database path. Text, not jsonb: Postgres neither parses it on write nor prints
    it back on read (SQL that needs the events casts `events::jsonb`); lz4-compressed where the
    server has lz4 (migration 0020).
    """

    pk = models.CompositePrimaryKey("session_id", "chunk", "archived_at")
    # No index of its own: the primary key (session, chunk, day) serves every lookup and delete.
    # No database constraint (the partitioned session table has no unique `id` to reference):
    # a session and its chunks are written in one transaction and retired with the same day.
    session = models.ForeignKey(
        Session,
        on_delete=models.CASCADE,
        related_name="timeline_chunks",
        db_index=False,
        db_constraint=False,
    )
    chunk = models.PositiveIntegerField()
    events = models.TextField()
    # Its session's archived_at: the partition key, so a chunk lives in its session's day.
    archived_at = models.DateTimeField()

    class Meta:
        ordering = ["session", "chunk"]

    def __str__(self) -> str:
        return f"timeline chunk {self.chunk} of {self.session_id}"


class QuarantinedSession(models.Model):
    """A session the archiver could not write to Postgres, kept with its snapshot and the error.

    It left Redis (so it is neither retried forever nor lost at expiry); an operator reads the
    database's error here and in the operations page, fixes the cause and re-imports it.
    """

    session_id = models.CharField(max_length=Session._meta.pk.max_length, unique=True)
    user_id = models.CharField(max_length=128, blank=True, default="")
    session_type = models.CharField(max_length=16, blank=True, default="")
    # JSON text (not jsonb, which refuses some of what can make a write fail, e.g. \u0000):
    # {"meta": {field: value}, "events": [event JSON text], "context": {...}, "results": {...}}
    snapshot = models.TextField()
    error = models.TextField()
    quarantined_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-quarantined_at"]
        indexes = [models.Index(fields=["-quarantined_at"], name="quarantine_at_idx")]

    def __str__(self) -> str:
        return f"quarantined session {self.session_id}"


class DeletedSession(models.Model):
    """Tombstone of a deleted session: the archiver checks it in its write transaction, so a
    delete racing an end or an archive wins (the snapshot taken before it is not written).

    Kept for TOMBSTONE_DAYS (an archive write takes seconds), then pruned by the retention job.
    """

    session_id = models.CharField(max_length=Session._meta.pk.max_length, primary_key=True)
    deleted_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["deleted_at"], name="tombstone_deleted_idx")]

    def __str__(self) -> str:
        return f"deleted session {self.session_id}"


class RetentionPolicy(models.Model):
    """Retention settings: one global row (session_type blank) plus optional per-type overrides.

    On an override row a blank field inherits the global value.
    """

    session_type = models.CharField(
        max_length=16,
        choices=SessionType.choices,
        blank=True,
        default="",
        unique=True,
        help_text="Blank for the global default; a type to override it for that type.",
    )
    default_ttl_hours = models.PositiveIntegerField(null=True, blank=True)
    max_ttl_hours = models.PositiveIntegerField(null=True, blank=True)
    idle_timeout_minutes = models.PositiveIntegerField(null=True, blank=True)
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    max_queries_per_session = models.PositiveIntegerField(null=True, blank=True)
    cleanup_interval_minutes = models.PositiveIntegerField(null=True, blank=True)
    # Optional caps (blank on the global row: no cap; on a type row: the global value).
    max_events_per_session = models.PositiveIntegerField(
        null=True, blank=True, help_text="Events (queries, messages, tool calls) per session."
    )
    max_state_bytes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Bytes of JSON in a session's context and results."
    )
    max_live_sessions_per_user = models.PositiveIntegerField(
        null=True, blank=True, help_text="Sessions in the live store per user."
    )
    max_live_sessions = models.PositiveIntegerField(
        null=True, blank=True, help_text="Active sessions in the live store in all."
    )
    updated_at = models.DateTimeField(auto_now=True)

    POLICY_FIELDS = (
        "default_ttl_hours",
        "max_ttl_hours",
        "idle_timeout_minutes",
        "retention_days",
        "max_queries_per_session",
        "cleanup_interval_minutes",
    )
    CAP_FIELDS = (
        "max_events_per_session",
        "max_state_bytes",
        "max_live_sessions_per_user",
        "max_live_sessions",
    )
    # A blank global field takes its SESSION_* setting, read at every start (not copied once).
    SETTINGS = {
        "default_ttl_hours": "SESSION_DEFAULT_TTL_HOURS",
        "max_ttl_hours": "SESSION_MAX_TTL_HOURS",
        "idle_timeout_minutes": "SESSION_IDLE_TIMEOUT_MINUTES",
        "retention_days": "SESSION_RETENTION_DAYS",
        "max_queries_per_session": "SESSION_MAX_QUERIES_PER_SESSION",
        "cleanup_interval_minutes": "SESSION_CLEANUP_INTERVAL_MINUTES",
    }

    class Meta:
        verbose_name_plural = "retention policies"
        ordering = ["session_type"]

    def __str__(self) -> str:
        return f"Retention policy: {self.session_type or 'global default'}"

    @property
    def is_global(self) -> bool:
        return self.session_type == ""

    def clean(self) -> None:
        errors = {}
        for name in (*self.POLICY_FIELDS, *self.CAP_FIELDS):
            value = getattr(self, name)
            if value is not None and value < 1:
                errors[name] = "Must be a positive number."
        if self.retention_days is not None and self.retention_days < 1:
            errors["retention_days"] = "Retention must be at least 1 day."
        if (
            self.default_ttl_hours is not None
            and self.max_ttl_hours is not None
            and self.max_ttl_hours < self.default_ttl_hours
        ):
            errors["max_ttl_hours"] = "Max TTL must be at least the default TTL."
        if not errors:  # values in force across inheritance (global row + overrides)
            from sessions_app.policy_checks import errors_if_saved

            errors.update(errors_if_saved(self))
        if errors:
            raise ValidationError(errors)

    @classmethod
    def global_defaults_from_settings(cls) -> dict[str, int]:
        """The values a blank global field takes: the SESSION_* settings (environment)."""
        return {name: getattr(settings, setting) for name, setting in cls.SETTINGS.items()}


class RollupSums(models.Model):
    """The summed columns of a rollup row, defined once for DailyMetric and UserDailyMetric
    (metrics.aggregate_sql fills both; metrics.ADDITIVE_COLUMNS are the ones a fold adds)."""

    # Counts are bigint: a day's queries or messages can pass 2^31 at the scale we target.
    sessions_started = models.BigIntegerField(default=0)
    sessions_completed = models.BigIntegerField(default=0)
    sessions_failed = models.BigIntegerField(default=0)
    sessions_abandoned = models.BigIntegerField(default=0)
    sessions_expired = models.BigIntegerField(default=0)
    queries = models.BigIntegerField(default=0)
    cache_hits = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    messages = models.BigIntegerField(default=0)
    tool_calls = models.BigIntegerField(default=0)
    total_duration_seconds = models.FloatField(default=0)
    tokens_in = models.DecimalField(max_digits=ROLLUP_TOKEN_DIGITS, decimal_places=0, default=0)
    tokens_out = models.DecimalField(max_digits=ROLLUP_TOKEN_DIGITS, decimal_places=0, default=0)
    cost = models.DecimalField(max_digits=ROLLUP_COST_DIGITS, decimal_places=6, default=0)
    # The AIECS counters of the day's sessions: request_count and total_processing_time summed.
    requests = models.BigIntegerField(default=0, db_default=0)
    processing_seconds = models.FloatField(default=0, db_default=0)
    # Log-scale histogram of duration_seconds (see histogram.py): merged in SQL, it gives real
    # percentiles over any range. Trimmed array with an explicit lower bound; NULL when empty.
    duration_hist = ArrayField(models.IntegerField(), null=True, blank=True)
    top_assets = models.JSONField(default=dict, blank=True)  # {asset: sessions}
    query_type_counts = models.JSONField(default=dict, blank=True)  # {query_type: queries}
    tag_counts = models.JSONField(default=dict, blank=True)  # {tag: sessions}

    class Meta:
        abstract = True


class DailyMetric(RollupSums):
    """Rollup of one day's sessions of one type.

    The archiver folds every batch it writes into its days' rows in the same transaction
    (rollups.fold_sessions), so a row is current as soon as the batch commits; recomputing a
    day (metrics.compute_daily_metrics) replaces its rows with the same numbers from raw rows.
    """

    day = models.DateField()
    session_type = models.CharField(max_length=16, choices=SessionType.choices)
    avg_duration_seconds = models.FloatField(default=0)
    p50_duration_seconds = models.FloatField(default=0)
    p95_duration_seconds = models.FloatField(default=0)
    p99_duration_seconds = models.FloatField(default=0)
    avg_queries_per_session = models.FloatField(default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day", "session_type"]
        constraints = [
            # Also serves the overview's range scan by day.
            models.UniqueConstraint(fields=["day", "session_type"], name="metric_day_type_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.session_type}"


class UserDailyMetric(RollupSums):
    """Rollup of one user's sessions of one type started on one day (in TIME_ZONE).

    Folded, unfolded and recomputed with DailyMetric, by the same statements' definition
    (metrics.aggregate_sql with per_user=True) and in the same transactions, so per-user stats
    read at most one row per (day, type) of the user, never the user's raw sessions. Averages
    and percentiles are derived at read time from the sums and the histogram.
    """

    user_id = models.CharField(max_length=128)
    day = models.DateField()
    session_type = models.CharField(max_length=16, choices=SessionType.choices)
    # min(created_at) and max(last_activity_at) of the row's sessions: "first seen, last active".
    first_session_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user_id", "-day", "session_type"]
        constraints = [
            # Also serves every per-user read: one user's days in a range.
            models.UniqueConstraint(
                fields=["user_id", "day", "session_type"], name="user_metric_user_day_type_uniq"
            ),
        ]
        indexes = [
            # The users list: every user's rows of a range of days, with the summed columns
            # (an index-only scan; the row's histogram and JSON stay unread). Recomputes too.
            models.Index(
                fields=["day"],
                include=[
                    "user_id",
                    "sessions_started",
                    "queries",
                    "errors",
                    "tokens_in",
                    "tokens_out",
                    "cost",
                    "last_activity_at",
                ],
                name="user_metric_day_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.day} {self.session_type}"


# Numeric sort columns of the users list (explore.USER_SORTS) that UserPeriodSummary indexes.
USER_SUMMARY_SORTS = ("sessions", "queries", "errors", "tokens", "cost")


class UserPeriodSnapshot(models.Model):
    """When the users list's summary of one period (7, 30 or 90 days) was built, and which
    days it covers: the list reads its UserPeriodSummary rows while `period_end` is today."""

    days = models.PositiveSmallIntegerField(primary_key=True)
    period_end = models.DateField()
    as_of = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.days} days to {self.period_end} as of {self.as_of}"


class UserPeriodSummary(models.Model):
    """One user's totals over one period of the users list, summed from UserDailyMetric by
    explore.period_users (the list's one definition); rebuilt whole, per period, by
    user_summaries.refresh_user_summaries. Each sort column is indexed after `days`, so a
    page is an index scan with LIMIT, not an aggregate of the period's rollup rows."""

    days = models.PositiveSmallIntegerField()
    user_id = models.CharField(max_length=128)
    sessions = models.BigIntegerField()
    queries = models.BigIntegerField()
    errors = models.BigIntegerField()
    tokens = models.DecimalField(max_digits=ROLLUP_TOKEN_DIGITS, decimal_places=0)
    cost = models.DecimalField(max_digits=ROLLUP_COST_DIGITS, decimal_places=6)
    last_active = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["days", "user_id"], name="user_summary_days_user_uniq")
        ]
        indexes = [
            *(
                models.Index(fields=["days", name], name=f"user_summary_{name}_idx")
                for name in USER_SUMMARY_SORTS
            ),
            # The default sort (-last_active, users without one last) read forwards.
            models.Index(
                models.F("days"),
                models.F("last_active").desc(nulls_last=True),
                name="user_summary_last_active_idx",
            ),
            # The "user" sort, in code-point order.
            models.Index(models.F("days"), Collate("user_id", "C"), name="user_summary_user_c_idx"),
            # The id-prefix search, any case: a range of lower(user_id) in the "C" collation.
            models.Index(
                models.F("days"), Collate(Lower("user_id"), "C"), name="user_summary_lower_c_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} ({self.days} days)"


class JobRun(models.Model):
    """What one background job run did."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCESS = "success", "Success"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (another run held the lock)"

    job = models.CharField(max_length=64)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    duration_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # Operations page: last runs of each job.
            models.Index(fields=["job", "-started_at"], name="jobrun_job_started_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.job} at {self.started_at:%Y-%m-%d %H:%M} ({self.outcome})"


class JobLease(models.Model):
    """The token of the run that holds a job's lock, for fencing its Postgres writes
    (sessions_app.jobs.assert_lease)."""

    job = models.CharField(max_length=64, primary_key=True)
    token = models.CharField(max_length=64)
    fence = models.BigIntegerField(default=0)  # how many runs have taken it: for the logs
    taken_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.job} lease #{self.fence}"


class ApiKey(models.Model):
    """A client's API key: only a SHA-256 of the secret is kept; the secret is shown once."""

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Write"

    name = models.CharField(max_length=100)
    # First characters of the key, kept in clear to find the row and to tell keys apart.
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_secret = models.CharField(max_length=64, editable=False)
    scopes = ArrayField(models.CharField(max_length=8, choices=Scope.choices), default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# ---- analyst features ---------------------------------------------------------------------------


class SavedView(models.Model):
    """A user's named filters of the History or Overview page, opened (and shared) by URL."""

    class Page(models.TextChoices):
        OVERVIEW = "overview", "Overview"
        HISTORY = "history", "History"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views"
    )
    name = models.CharField(max_length=80)
    page = models.CharField(max_length=16, choices=Page.choices)
    # The page's filters as a query string, only the parameters that page understands.
    query = models.CharField(max_length=1000, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Not columns: set on the instances the saved-views page lists, for its template.
    open_url: str
    share_url: str

    class Meta:
        ordering = ["page", "name"]
        constraints = [
            # Also the index of the menu's lookup: one owner's views of one page, by name.
            models.UniqueConstraint(
                fields=["owner", "page", "name"], name="savedview_owner_page_name_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.page})"


# Models kept in their own modules, registered with the app here.
from sessions_app.alerts.models import *  # noqa: E402, F403
from sessions_app.audit import AuditEntry  # noqa: E402, F401
