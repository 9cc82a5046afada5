"""Alert evaluation: one pass over 100 rules on the archive as it stands (1M sessions in a full
run), from the rollups, the live store and JobRun; notifications off."""

from __future__ import annotations

from django.db import connection
from django.db.models import QuerySet

from sessions_app.benchmark.core import (
    Row,
    RunContext,
    SectionResult,
    percentile,
    time_interleaved,
)
from sessions_app.benchmark.web import ensure_archived_sessions

RULES = 100
USER_RULES = 10  # narrowed to one user: read archived sessions through the user index
TARGET_MS = 50.0


def run_alerts(ctx: RunContext, result: SectionResult) -> None:
    """Time evaluate_rules over RULES bench rules (deleted at cleanup)."""
    from sessions_app.alerts.evaluate import evaluate_rules
    from sessions_app.alerts.models import AlertRule

    total = ensure_archived_sessions(ctx, result)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_id FROM sessions_app_session WHERE user_id <> '' "
            "ORDER BY created_at DESC LIMIT %s",
            [USER_RULES],
        )
        users = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT count(*) FROM sessions_app_dailymetric")
        rollup_rows = cursor.fetchone()[0]
    repeats = 5 if ctx.config.quick else 50
    ctx.cleanups.append(lambda: AlertRule.objects.filter(name__startswith="bench-").delete())
    for label, user_rules in (
        (f"{RULES} rules, {USER_RULES} narrowed to a user", USER_RULES),
        (f"{RULES} rules, none narrowed to a user", 0),
    ):
        prefix = f"bench-{ctx.run_id}-{user_rules}-"
        AlertRule.objects.bulk_create(_rules(prefix, users, user_rules))
        mine = AlertRule.objects.filter(name__startswith=prefix)

        def evaluate(i: int, mine: QuerySet = mine) -> None:
            evaluate_rules(notify=False, rules=mine)

        # Interleaved with a Postgres SELECT 1, so the note can say how many round trips a pass
        # costs at this moment's load (the machine is shared; absolute ms drift with it).
        samples, floor = time_interleaved(
            [evaluate, _select_one],
            repeats,
            warmup=2,
        )
        row = Row.latency(f"evaluate_rules, {label}", samples)
        row.ratio = ctx.ratio(row.p50)
        row.target = f"p95 < {TARGET_MS:.0f} ms"
        row.passed = row.p95 < TARGET_MS
        floor_p50 = percentile(floor, 50)
        row.note = (
            f"{total:,} archived sessions, {rollup_rows:,} rollup rows; "
            f"p50 = {row.p50 / floor_p50:.0f}x a Postgres SELECT 1 ({floor_p50:.2f} ms)"
        )
        result.rows.append(row)
    result.setup.update(archived_sessions=total, rules=RULES, repeats=repeats)


def _select_one(i: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _rules(prefix: str, users: list[str], user_rules: int) -> list:
    """RULES rules over every metric, types and windows; the first `user_rules` on a user."""
    from sessions_app.alerts.models import AlertRule, Metric
    from sessions_app.alerts.sources import ROLLUP_METRICS

    metrics = list(Metric)
    types = ["", "equity", "crypto", "agent"]
    rules = []
    for i in range(RULES):
        metric = metrics[i % len(metrics)]
        user = users[i % len(users)] if users and i < user_rules else ""
        if user:
            metric = Metric.ERROR_RATE
        rules.append(
            AlertRule(
                name=f"{prefix}{i}",
                metric=metric,
                session_type=types[i % len(types)] if metric in ROLLUP_METRICS else "",
                user_id=user,
                window_minutes=[60, 1440, 7 * 1440][i % 3],
                threshold=1e12,  # never fires: the pass is timed, not the notifications
            )
        )
    return rules
