"""Alert rules end to end: sessions through the store, rollups, the evaluation job, a signed
webhook to a real local HTTP server, an email in Django's test outbox, then resolution."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from sessions_app.alerts import notify
from sessions_app.alerts.evaluate import evaluate_rules
from sessions_app.alerts.models import (
    AlertEvent,
    AlertRule,
    AlertState,
    Metric,
    WebhookDelivery,
    WebhookTarget,
)
from sessions_app.alerts.sparkline import sparkline
from sessions_app.alerts.tasks import run_evaluation
from sessions_app.domain import QueryRecord
from sessions_app.models import JobRun
from sessions_app.tasks import run_named_job

pytestmark = pytest.mark.django_db
SECRET = "s3cret-for-tests"


class Receiver:
    """A real HTTP server on a free loopback port that records what it receives."""

    def __init__(self, statuses=()):
        self.requests: list[tuple[dict, bytes]] = []
        self.statuses = list(statuses)  # answers to give first (then 204)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def _sessions(store, count: int, errors_each: int, queries_each: int = 4) -> None:
    """`count` equity sessions with `errors_each` failed queries out of `queries_each`; ended."""
    for _ in range(count):
        session = store.create_session(assets=["AAPL"], session_type="equity", user_id="alice")
        for i in range(queries_each):
            error = "upstream timeout" if i < errors_each else ""
            store.add_query(session.id, QueryRecord("price", {}, "", 5.0, False, error))
        store.end_session(session.id, status="completed")
    assert run_named_job("metrics")["outcome"] == JobRun.Outcome.SUCCESS


def _error_rule(receiver) -> AlertRule:
    target = WebhookTarget.objects.create(name="ops", url=receiver.url, secret=SECRET)
    rule = AlertRule.objects.create(
        name="equity errors",
        metric=Metric.ERROR_RATE,
        session_type="equity",
        window_minutes=60,
        comparison="gt",
        threshold=20,
        min_sessions=3,
        cooldown_minutes=30,
        emails="oncall@example.com, lead@example.com",
    )
    rule.webhooks.add(target)
    return rule


def test_error_rate_fires_signed_webhook_and_email_then_resolves_once(store, receiver):
    rule = _error_rule(receiver)
    _sessions(store, 4, errors_each=2)  # 8 errors of 16 queries: 50 % > 20 %

    result = run_evaluation()
    assert result["outcome"] == JobRun.Outcome.SUCCESS, result["error"]
    rule.refresh_from_db()
    assert rule.state == AlertState.FIRING
    assert rule.last_value == pytest.approx(50.0)
    fired = AlertEvent.objects.get(rule=rule)
    assert fired.kind == AlertEvent.Kind.FIRED and fired.sessions == 4

    # The webhook reached the real server, signed with the target's secret.
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert notify.verify(SECRET, headers[notify.SIGNATURE_HEADER], body)
    assert not notify.verify("wrong secret", headers[notify.SIGNATURE_HEADER], body)
    document = json.loads(body)
    assert document["event"] == "fired"
    assert document["rule"]["name"] == "equity errors"
    assert document["value"] == pytest.approx(50.0)
    delivery = WebhookDelivery.objects.get(event=fired)
    assert delivery.outcome == WebhookDelivery.Outcome.DELIVERED and delivery.status_code == 204

    # One email to both recipients.
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == ["lead@example.com", "oncall@example.com"]
    assert "equity errors" in mail.outbox[0].subject and "FIRING" in mail.outbox[0].subject

    # Still above: no new event, no new notification.
    run_evaluation()
    assert AlertEvent.objects.filter(rule=rule).count() == 1
    assert len(receiver.requests) == 1 and len(mail.outbox) == 1

    # Twelve clean sessions: 8 errors of 64 queries = 12.5 % < 20 %.
    _sessions(store, 12, errors_each=0)
    run_evaluation()
    run_evaluation()
    rule.refresh_from_db()
    assert rule.state == AlertState.OK
    assert rule.last_value == pytest.approx(12.5)
    kinds = list(
        AlertEvent.objects.filter(rule=rule).order_by("at", "id").values_list("kind", flat=True)
    )
    assert kinds == ["fired", "resolved"]
    assert len(receiver.requests) == 2
    headers, body = receiver.requests[1]
    assert notify.verify(SECRET, headers[notify.SIGNATURE_HEADER], body)
    assert json.loads(body)["event"] == "resolved"
    assert len(mail.outbox) == 2 and "resolved" in mail.outbox[1].subject


def test_too_few_sessions_cannot_fire(store, receiver):
    rule = _error_rule(receiver)
    _sessions(store, 2, errors_each=4)  # 100 % errors but only 2 sessions < min 3
    evaluate_rules()
    rule.refresh_from_db()
    assert rule.state == AlertState.NO_DATA
    assert not AlertEvent.objects.exists() and not receiver.requests


def test_silenced_rule_records_events_but_does_not_notify(store, receiver):
    rule = _error_rule(receiver)
    rule.silenced_until = timezone.now() + timedelta(hours=1)
    rule.save()
    _sessions(store, 3, errors_each=2)
    evaluate_rules()
    assert AlertEvent.objects.filter(rule=rule, kind="fired").count() == 1
    assert not receiver.requests and not mail.outbox


def test_failed_webhook_is_retried_with_backoff_then_delivered(store):
    server = Receiver(statuses=[500])
    try:
        rule = _error_rule(server)
        _sessions(store, 3, errors_each=2)
        now = timezone.now()
        evaluate_rules(now=now)
        delivery = WebhookDelivery.objects.get()
        assert delivery.outcome == WebhookDelivery.Outcome.PENDING
        assert delivery.attempts == 1 and delivery.status_code == 500
        assert delivery.next_attempt_at == now + timedelta(seconds=notify.BACKOFF_SECONDS)
        # Not due yet: nothing sent.
        assert notify.deliver_due(now + timedelta(seconds=10))["retrying"] == 0
        assert len(server.requests) == 1
        counts = notify.deliver_due(now + timedelta(seconds=notify.BACKOFF_SECONDS))
        assert counts["delivered"] == 1
        delivery.refresh_from_db()
        assert delivery.outcome == WebhookDelivery.Outcome.DELIVERED and delivery.attempts == 2
        assert rule.events.count() == 1
    finally:
        server.close()


def test_unreachable_webhook_gives_up_after_max_attempts(store):
    server = Receiver()
    url = server.url
    server.close()  # nothing listens there any more
    target = WebhookTarget.objects.create(name="gone", url=url, secret=SECRET)
    rule = AlertRule.objects.create(name="live", metric=Metric.LIVE_SESSIONS, threshold=0)
    rule.webhooks.add(target)
    store.create_session(assets=["BTC"], session_type="crypto")
    now = timezone.now()
    evaluate_rules(now=now)
    for attempt in range(1, notify.MAX_ATTEMPTS):
        now += timedelta(seconds=notify.BACKOFF_SECONDS * 2 ** (attempt - 1))
        notify.deliver_due(now)
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == WebhookDelivery.Outcome.FAILED
    assert delivery.attempts == notify.MAX_ATTEMPTS and "Error" in delivery.error


def test_live_sessions_and_job_streak_metrics(store):
    live = AlertRule.objects.create(
        name="crypto live", metric=Metric.LIVE_SESSIONS, session_type="crypto", threshold=1
    )
    streak = AlertRule.objects.create(
        name="cleanup failing",
        metric=Metric.JOB_FAILURES,
        job="cleanup_expired_sessions",
        comparison="gte",
        threshold=2,
    )
    for _ in range(2):
        store.create_session(assets=["BTC"], session_type="crypto")
    store.create_session(assets=["AAPL"], session_type="equity")
    now = timezone.now()
    for minutes, outcome in ((3, "failed"), (2, "skipped"), (1, "failed"), (4, "success")):
        JobRun.objects.create(
            job="cleanup_expired_sessions",
            outcome=outcome,
            started_at=now - timedelta(minutes=minutes),
        )
    evaluate_rules(now=now, notify=False)
    live.refresh_from_db()
    streak.refresh_from_db()
    assert live.last_value == 2 and live.state == AlertState.FIRING
    assert live.recent_values == [[int(now.timestamp()), 2.0]]
    assert streak.last_value == 2 and streak.state == AlertState.FIRING


def test_evaluation_job_is_scheduled_every_minute():
    from sessions_app import jobs, schedules

    tasks = schedules.sync_periodic_tasks()
    task = tasks[jobs.JOBS["alerts"].task]
    assert task.crontab.minute == "*" and task.crontab.hour == "*"
    assert task.task == "sessions_app.tasks.evaluate_alerts"


def test_rule_validation_names_the_field():
    from django.core.exceptions import ValidationError

    rule = AlertRule(
        name="x",
        metric=Metric.ARCHIVE_BACKLOG,
        session_type="equity",
        threshold=1,
        emails="not-an-address",
    )
    with pytest.raises(ValidationError) as info:
        rule.full_clean()
    assert set(info.value.message_dict) == {"session_type", "emails"}


def test_sparkline_is_escaped_svg_with_threshold_line():
    svg = sparkline([[1, 1.0], [2, None], [3, 5.0]], threshold=3)
    assert svg.startswith("<svg") and "stroke-dasharray" in svg and "polyline" in svg
    assert "no data" in sparkline([], threshold=1)


def test_alerts_page_lists_rules_and_only_admins_silence(client, analyst, retention_admin):
    rule = AlertRule.objects.create(
        name="<b>errors</b>",
        metric=Metric.ERROR_RATE,
        threshold=5,
        recent_values=[[1, 1.0], [2, 9.0]],
        state="firing",
        last_value=9.0,
    )
    client.force_login(analyst)
    page = client.get("/alerts/")
    assert page.status_code == 200
    assert b"&lt;b&gt;errors&lt;/b&gt;" in page.content and b"<svg" in page.content
    assert f"/alerts/{rule.pk}/silence".encode() not in page.content
    assert client.post(f"/alerts/{rule.pk}/silence", {"hours": "4"}).status_code == 403

    client.force_login(retention_admin)
    assert f"/alerts/{rule.pk}/silence".encode() in client.get("/alerts/").content
    assert client.post(f"/alerts/{rule.pk}/silence", {"hours": "5"}).status_code == 302
    rule.refresh_from_db()
    assert rule.silenced_until is None  # 5 h is not an offered duration: nothing changed
    client.post(f"/alerts/{rule.pk}/silence", {"hours": "4"})
    rule.refresh_from_db()
    assert rule.silenced_until > timezone.now() + timedelta(hours=3, minutes=59)


def test_user_narrowed_rules_read_only_that_users_sessions():
    from tests.factories import archived_sessions

    now = timezone.now()
    archived_sessions(
        [
            {
                "user_id": user,
                "session_type": session_type,
                "status": status,
                "created_at": now - timedelta(minutes=30),
                "duration_seconds": duration,
                "queries": [{"query_type": "price", "error": error}] * 2,
            }
            for user, session_type, status, error, duration in [
                ("bob", "equity", "completed", "boom", 10),
                ("bob", "crypto", "failed", "", 20),
                ("alice", "equity", "abandoned", "", 30),
                ("alice", "equity", "completed", "", 40),
            ]
        ]
    )
    rules = {
        name: AlertRule.objects.create(
            name=name, metric=metric, user_id=user, session_type=session_type, threshold=1e9
        )
        for name, metric, user, session_type in [
            ("bob errors", Metric.ERROR_RATE, "bob", ""),
            ("bob equity errors", Metric.ERROR_RATE, "bob", "equity"),
            ("bob failures", Metric.FAILURE_RATE, "bob", ""),
            ("alice abandoned", Metric.ABANDONMENT_RATE, "alice", ""),
            ("alice started", Metric.SESSIONS_STARTED, "alice", ""),
            ("nobody", Metric.ERROR_RATE, "nobody", ""),
        ]
    }
    evaluate_rules(now=now, notify=False)
    values = {name: AlertRule.objects.get(pk=rule.pk).last_value for name, rule in rules.items()}
    assert values == {
        "bob errors": 50.0,
        "bob equity errors": 100.0,
        "bob failures": 50.0,
        "alice abandoned": 50.0,
        "alice started": 2.0,
        "nobody": None,
    }


def test_operations_recent_runs_leave_out_successful_alert_passes(analyst_client):
    now = timezone.now()
    JobRun.objects.create(job="evaluate_alerts", outcome="success", started_at=now)
    JobRun.objects.create(job="evaluate_alerts", outcome="failed", started_at=now, error="x")
    JobRun.objects.create(job="generate_session_metrics", outcome="success", started_at=now)
    runs = analyst_client.get("/operations/").context["recent_runs"]
    assert sorted((run.job, run.outcome) for run in runs) == [
        ("evaluate_alerts", "failed"),
        ("generate_session_metrics", "success"),
    ]


def test_sparkline_history_keeps_the_last_points():
    from sessions_app.alerts.models import SPARKLINE_POINTS

    rule = AlertRule.objects.create(name="backlog", metric=Metric.ARCHIVE_BACKLOG, threshold=5)
    start = timezone.now()
    for minute in range(SPARKLINE_POINTS + 3):
        evaluate_rules(now=start + timedelta(minutes=minute), notify=False)
    rule.refresh_from_db()
    assert len(rule.recent_values) == SPARKLINE_POINTS
    assert rule.recent_values[0][0] == int((start + timedelta(minutes=3)).timestamp())
    assert rule.recent_values[-1] == [
        int((start + timedelta(minutes=SPARKLINE_POINTS + 2)).timestamp()),
        0.0,
    ]
