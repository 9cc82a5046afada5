"""Alert evaluation: one pass over 100 rules on the archive as it stands (1M sessions in a full
run), from the rollups, the live store and JobRun; notifications off."""

from __future__ import annotations

from django.db import connection

from sessions_app.benchmark.core import Row, RunContext, SectionResult, time_calls
from sessions_app.benchmark.web import ensure_archived_sessions

RULES = 100
USER_RULES = 10  # narrowed to one user: read archived sessions through the user index
TARGET_MS = 50.0


def run_alerts(ctx: RunContext, result: SectionResult) -> None:
    """Time evaluate_rules over RULES bench rules (deleted at cleanup)."""
    from sessions_app.alerts.evaluate import evaluate_rules
    from sessions_app.alerts.models import AlertRule, Metric
    from sessions_app.alerts.sources import ROLLUP_METRICS

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
    metrics = list(Metric)
    types = ["", "equity", "crypto", "agent"]
    rules = []
    for i in range(RULES):
        metric = metrics[i % len(metrics)]
        user = users[i % len(users)] if users and i < USER_RULES else ""
        if user:
            metric = Metric.ERROR_RATE
        rules.append(
            AlertRule(
                name=f"bench-{ctx.run_id}-{i}",
                metric=metric,
                session_type=types[i % len(types)] if metric in ROLLUP_METRICS else "",
                user_id=user,
                window_minutes=[60, 1440, 7 * 1440][i % 3],
                threshold=1e12,  # never fires: the pass is timed, not the notifications
            )
        )
    AlertRule.objects.bulk_create(rules)
    mine = AlertRule.objects.filter(name__startswith=f"bench-{ctx.run_id}-")
    ctx.cleanups.append(lambda: AlertRule.objects.filter(name__startswith="bench-").delete())
    repeats = 5 if ctx.config.quick else 50
    samples = time_calls(lambda i: evaluate_rules(notify=False, rules=mine), repeats, warmup=2)
    row = Row.latency(f"evaluate_rules, {RULES} rules", samples)
    row.target = f"p95 < {TARGET_MS:.0f} ms"
    row.passed = row.p95 < TARGET_MS
    row.note = f"{total:,} archived sessions, {rollup_rows:,} rollup rows, {USER_RULES} user rules"
    result.rows.append(row)
    result.setup.update(archived_sessions=total, rules=RULES, repeats=repeats)
