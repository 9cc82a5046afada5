"""Metric values for alert rules: from the DailyMetric rollups, the live store and JobRun rows.

One `Sources` serves one evaluation pass and shares its reads between rules: one rollup query
for every rollup rule, one Redis round trip for live counts, one query per job for failure
streaks, one query over UserDailyMetric for every rule narrowed to a user. Nothing here reads
sessions or events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from django.db import connection
from django.utils import timezone

from sessions_app import jobs
from sessions_app.alerts.models import AlertRule, Metric
from sessions_app.models import DailyMetric, JobRun, UserDailyMetric

logger = logging.getLogger(__name__)

ROLLUP_METRICS = {
    Metric.ERROR_RATE,
    Metric.ABANDONMENT_RATE,
    Metric.FAILURE_RATE,
    Metric.P95_DURATION,
    Metric.COST,
    Metric.TOKENS,
    Metric.SESSIONS_STARTED,
}
# Runs looked at for a failure streak; a longer streak reads as this many.
STREAK_LOOKBACK = 50
EVALUATE_ALERTS = jobs.ALERTS  # JobRun.job of the evaluation job
KNOWN_JOBS = tuple(job.name for job in jobs.JOBS.values())


@dataclass(frozen=True)
class Reading:
    """A metric's value (None: no data) and the sessions behind it (None: not about sessions)."""

    value: float | None
    sessions: int | None = None


def archive_backlog() -> int:
    """Sessions past due and not archived yet (the store's ZCOUNT of its due index)."""
    from sessions_app.store import get_session_store

    return int(get_session_store().archive_backlog(timezone.now().timestamp()))


def quarantined_sessions() -> int:
    """Sessions the archiver could not write and set aside in the quarantine."""
    from sessions_app.models import QuarantinedSession

    return QuarantinedSession.objects.count()


def window_days(window_minutes: int, now: datetime) -> tuple[date, date]:
    """(first day, today) in TIME_ZONE: the whole days the window touches."""
    today = timezone.localdate(now)
    first = timezone.localdate(now - timedelta(minutes=window_minutes))
    return first, today


def _rate(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def _from_totals(metric: str, totals: dict) -> Reading:
    started = int(totals.get("started") or 0)
    if metric == Metric.ERROR_RATE:
        return Reading(_rate(totals.get("errors") or 0, totals.get("queries") or 0), started)
    if metric == Metric.ABANDONMENT_RATE:
        return Reading(_rate(totals.get("abandoned") or 0, started), started)
    if metric == Metric.FAILURE_RATE:
        return Reading(_rate(totals.get("failed") or 0, started), started)
    if metric == Metric.P95_DURATION:
        return Reading(float(totals["p95"]) if started else None, started)
    if metric == Metric.COST:
        return Reading(float(totals.get("cost") or Decimal(0)), started)
    if metric == Metric.TOKENS:
        return Reading(float(totals.get("tokens") or 0), started)
    return Reading(float(started), started)  # sessions started


def _totals(rows, rule: AlertRule, now: datetime) -> dict:
    """Sums over the rows (DailyMetric-shaped) of the rule's days and type."""
    first, today = window_days(rule.window_minutes, now)
    totals: dict[str, Any] = {"started": 0, "errors": 0, "queries": 0, "abandoned": 0, "failed": 0}
    totals.update(p95=0.0, cost=Decimal(0), tokens=0)
    for row in rows:
        if not first <= row.day <= today:
            continue
        if rule.session_type and row.session_type != rule.session_type:
            continue
        totals["started"] += row.sessions_started
        totals["errors"] += row.errors
        totals["queries"] += row.queries
        totals["abandoned"] += row.sessions_abandoned
        totals["failed"] += row.sessions_failed
        # Daily p95s do not add up; the worst day's is the window's upper bound.
        totals["p95"] = max(totals["p95"], row.p95_duration_seconds)
        totals["cost"] += row.cost
        totals["tokens"] += row.tokens_in + row.tokens_out
    return totals


# The user rules' read: DailyMetric-shaped UserDailyMetric rows (p95 from each row's histogram).
_USER_COLUMNS = (
    "user_id",
    "session_type",
    "day",
    "sessions_started",
    "errors",
    "queries",
    "sessions_abandoned",
    "sessions_failed",
    "p95_duration_seconds",
    "cost",
    "tokens_in",
    "tokens_out",
)
_USER_SQL = f"""
SELECT user_id, session_type, day, sessions_started, errors, queries, sessions_abandoned,
       sessions_failed, coalesce(fs_hist_quantile(duration_hist, 0.95), 0), cost, tokens_in,
       tokens_out
FROM {UserDailyMetric._meta.db_table}
WHERE user_id = ANY(%s) AND day >= %s AND day <= %s
"""  # noqa: S608 - table name is a constant; values are bound


_STREAK_SQL = f"""
SELECT j.job, r.outcome
FROM unnest(%s::text[]) AS j(job)
CROSS JOIN LATERAL (
    SELECT outcome, started_at FROM {JobRun._meta.db_table}
    WHERE job = j.job AND outcome IN ('{JobRun.Outcome.SUCCESS}', '{JobRun.Outcome.FAILED}')
    ORDER BY started_at DESC LIMIT %s
) AS r
ORDER BY j.job, r.started_at DESC
"""  # noqa: S608 - table name and outcomes are constants; values are bound


class Sources:
    """Reads for one evaluation pass at `now`, shared between rules."""

    def __init__(self, rules: list[AlertRule], now: datetime | None = None):
        self.now = now or timezone.now()
        self._rules = rules
        self._rollups: list[DailyMetric] | None = None
        self._live: dict | None = None
        self._streaks: dict[str, int] = {}
        self._cached: dict[str, object] = {}
        self._users: list[SimpleNamespace] | None = None
        self._totals: dict[tuple, dict] = {}

    def read(self, rule: AlertRule) -> Reading:
        """The rule's metric now; errors reading one source give no data, not a failed pass."""
        try:
            return self._read(rule)
        except Exception as exc:  # noqa: BLE001 - one unreadable source must not stop the pass
            logger.warning("alert %s: cannot read %s: %s", rule.name, rule.metric, exc)
            return Reading(None)

    def _read(self, rule: AlertRule) -> Reading:
        metric = Metric(rule.metric)
        if metric in ROLLUP_METRICS:
            if rule.user_id:
                return _from_totals(metric, self._user_totals(rule))
            return _from_totals(metric, self._rollup_totals(rule))
        if metric == Metric.LIVE_SESSIONS:
            counts = self._live_counts()
            value = counts["by_type"].get(rule.session_type, 0) if rule.session_type else None
            return Reading(float(counts["total"] if value is None else value))
        if metric == Metric.ARCHIVE_BACKLOG:
            return Reading(float(self._once("backlog", archive_backlog)))
        if metric == Metric.QUARANTINED:
            count = self._once("quarantined", quarantined_sessions)
            return Reading(None if count is None else float(count))
        names = [rule.job] if rule.job else list(KNOWN_JOBS)
        return Reading(float(max(self._streak(name) for name in names)))

    def _once(self, name: str, func):
        if name not in self._cached:
            self._cached[name] = func()
        return self._cached[name]

    def _live_counts(self) -> dict:
        if self._live is None:
            from sessions_app.store import get_session_store

            self._live = live = get_session_store().live_counts()
            return live
        return self._live

    def _rollup_rows(self) -> list[DailyMetric]:
        """DailyMetric rows of every day any rollup rule's window touches (one query)."""
        if self._rollups is None:
            windows = [r.window_minutes for r in self._rules if r.metric in ROLLUP_METRICS]
            first, _ = window_days(max(windows, default=1), self.now)
            self._rollups = list(
                DailyMetric.objects.filter(day__gte=first).only(
                    "day",
                    "session_type",
                    "sessions_started",
                    "sessions_failed",
                    "sessions_abandoned",
                    "queries",
                    "errors",
                    "p95_duration_seconds",
                    "tokens_in",
                    "tokens_out",
                    "cost",
                )
            )
        return self._rollups

    def _rollup_totals(self, rule: AlertRule) -> dict:
        # Rules share types and windows: sum each (type, first day) once per pass.
        key = (rule.session_type, window_days(rule.window_minutes, self.now)[0])
        if key not in self._totals:
            self._totals[key] = _totals(self._rollup_rows(), rule, self.now)
        return self._totals[key]

    def _user_rows(self) -> list[SimpleNamespace]:
        """Per (user, type, day) rollup rows of every user some rule narrows to, over the
        longest window: one query (the (user_id, day, session_type) key)."""
        if self._users is None:
            narrowed = [r for r in self._rules if r.user_id and r.metric in ROLLUP_METRICS]
            users = sorted({r.user_id for r in narrowed})
            self._users = []
            if users:
                first, today = window_days(max(r.window_minutes for r in narrowed), self.now)
                with connection.cursor() as cursor:
                    cursor.execute(_USER_SQL, [users, first, today])
                    self._users = [
                        SimpleNamespace(**dict(zip(_USER_COLUMNS, row, strict=True)))
                        for row in cursor.fetchall()
                    ]
        return self._users

    def _user_totals(self, rule: AlertRule) -> dict:
        rows = [row for row in self._user_rows() if row.user_id == rule.user_id]
        return _totals(rows, rule, self.now)

    def _streak(self, job: str) -> int:
        """Failed runs of `job` in a row, newest first (skipped and running runs ignored)."""
        if job not in self._streaks:
            names = sorted({job, *KNOWN_JOBS, *(r.job for r in self._rules if r.job)})
            # One round trip for every job: the latest finished runs of each (job index).
            with connection.cursor() as cursor:
                cursor.execute(_STREAK_SQL, [names, STREAK_LOOKBACK])
                outcomes: dict[str, list[str]] = {name: [] for name in names}
                for name, outcome in cursor.fetchall():
                    outcomes[name].append(outcome)
            for name, runs in outcomes.items():
                streak = 0
                for outcome in runs:
                    if outcome != JobRun.Outcome.FAILED:
                        break
                    streak += 1
                self._streaks[name] = streak
        return self._streaks[job]
