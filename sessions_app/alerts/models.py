"""Alert rules, the events they raise, and where notifications go (email, signed webhooks)."""

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models

from sessions_app.models import SessionType


class Metric(models.TextChoices):
    ERROR_RATE = "error_rate", "Error rate (% of queries)"
    ABANDONMENT_RATE = "abandonment_rate", "Abandonment rate (% of sessions)"
    FAILURE_RATE = "failure_rate", "Failure rate (% of sessions)"
    P95_DURATION = "p95_duration", "p95 session duration (seconds)"
    COST = "cost", "Cost per window"
    TOKENS = "tokens", "Tokens per window"
    SESSIONS_STARTED = "sessions_started", "Sessions started"
    LIVE_SESSIONS = "live_sessions", "Live sessions now"
    ARCHIVE_BACKLOG = "archive_backlog", "Archive backlog (past due, not archived)"
    QUARANTINED = "quarantined", "Quarantined sessions"
    JOB_FAILURES = "job_failures", "Job failures in a row"


class Comparison(models.TextChoices):
    GT = "gt", ">"
    GTE = "gte", "≥"
    LT = "lt", "<"
    LTE = "lte", "≤"


class AlertState(models.TextChoices):
    OK = "ok", "OK"
    FIRING = "firing", "Firing"
    NO_DATA = "no_data", "Not enough data"


# Metrics a session type or user narrows; the others are system-wide.
TYPED_METRICS = {
    Metric.ERROR_RATE,
    Metric.ABANDONMENT_RATE,
    Metric.FAILURE_RATE,
    Metric.P95_DURATION,
    Metric.COST,
    Metric.TOKENS,
    Metric.SESSIONS_STARTED,
    Metric.LIVE_SESSIONS,
}
USER_METRICS = TYPED_METRICS - {Metric.LIVE_SESSIONS}
# How many recent values a rule keeps for its sparkline (one per evaluation).
SPARKLINE_POINTS = 60


class WebhookTarget(models.Model):
    """An HTTPS endpoint that receives alert events as JSON signed with HMAC-SHA256."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500)
    secret = models.CharField(
        max_length=128, help_text="Shared secret: the X-Fiml-Signature header is signed with it."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertRule(models.Model):
    """A threshold on one metric over a window, evaluated every minute by the beat job."""

    name = models.CharField(max_length=100, unique=True)
    metric = models.CharField(max_length=32, choices=Metric.choices)
    session_type = models.CharField(
        max_length=16, choices=SessionType.choices, blank=True, default="", help_text="Blank: all."
    )
    user_id = models.CharField(max_length=128, blank=True, default="", help_text="Blank: all.")
    job = models.CharField(
        max_length=64, blank=True, default="", help_text="Job failures only; blank: any job."
    )
    window_minutes = models.PositiveIntegerField(
        default=1440,
        help_text="Rollup metrics cover the whole days (in TIME_ZONE) this window touches.",
    )
    comparison = models.CharField(max_length=4, choices=Comparison.choices, default="gt")
    threshold = models.FloatField()
    min_sessions = models.PositiveIntegerField(
        default=0, help_text="The rule cannot fire on fewer sessions than this in the window."
    )
    cooldown_minutes = models.PositiveIntegerField(
        default=60, help_text="At least this long between two notifications of the rule."
    )
    silenced_until = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    emails = models.CharField(
        max_length=1000, blank=True, default="", help_text="Comma-separated addresses."
    )
    webhooks = models.ManyToManyField(WebhookTarget, blank=True, related_name="rules")

    # Written by the evaluation job.
    state = models.CharField(max_length=8, choices=AlertState.choices, default=AlertState.OK)
    last_value = models.FloatField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    recent_values = models.JSONField(default=list, blank=True)  # [[epoch, value], ...]

    class Meta:
        ordering = ["name"]
        permissions = [("silence_alertrule", "Can silence alert rules")]

    def __str__(self) -> str:
        return self.name

    @property
    def email_list(self) -> list[str]:
        return [item.strip() for item in self.emails.split(",") if item.strip()]

    def clean(self) -> None:
        errors = {}
        for address in self.email_list:
            try:
                validate_email(address)
            except ValidationError:
                errors["emails"] = f"{address!r} is not an email address."
        if self.session_type and self.metric not in TYPED_METRICS:
            errors["session_type"] = "This metric is system-wide: leave the type blank."
        if self.user_id and self.metric not in USER_METRICS:
            errors["user_id"] = "This metric cannot be narrowed to a user."
        if self.job and self.metric != Metric.JOB_FAILURES:
            errors["job"] = "Only job-failure rules name a job."
        if self.window_minutes is not None and self.window_minutes < 1:
            errors["window_minutes"] = "Must be at least 1 minute."
        if errors:
            raise ValidationError(errors)

    def breaches(self, value: float) -> bool:
        """Whether `value` is on the wrong side of the threshold."""
        return {
            Comparison.GT: value > self.threshold,
            Comparison.GTE: value >= self.threshold,
            Comparison.LT: value < self.threshold,
            Comparison.LTE: value <= self.threshold,
        }[Comparison(self.comparison)]


class AlertEvent(models.Model):
    """A rule started firing, or stopped."""

    class Kind(models.TextChoices):
        FIRED = "fired", "Fired"
        RESOLVED = "resolved", "Resolved"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    at = models.DateTimeField()
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField()
    sessions = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True, default="")
    emailed = models.PositiveIntegerField(default=0)  # recipients the email went to

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["rule", "-at"], name="alertevent_rule_at_idx")]

    def __str__(self) -> str:
        return f"{self.rule} {self.kind} at {self.at:%Y-%m-%d %H:%M}"


class WebhookDelivery(models.Model):
    """One alert event sent to one webhook target, retried with backoff until delivered."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending (will retry)"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (gave up)"

    target = models.ForeignKey(WebhookTarget, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    payload = models.JSONField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-id"]
        indexes = [
            # The evaluation job's retry pass: pending deliveries that are due.
            models.Index(fields=["outcome", "next_attempt_at"], name="delivery_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.target} ({self.outcome})"
