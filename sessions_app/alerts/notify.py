"""Alert notifications: email through Django's backend, webhooks as signed JSON with retries.

A webhook body is JSON; `X-Fiml-Signature: t=<unix time>,v1=<hex>` carries
HMAC-SHA256(secret, "<t>.<body>"), so a receiver can check both origin and freshness. A delivery
that fails (network error or non-2xx) is retried by later evaluation passes with exponential
backoff, up to MAX_ATTEMPTS; every attempt is in WebhookDelivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import timezone

from sessions_app.alerts.models import AlertEvent, AlertRule, WebhookDelivery

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Fiml-Signature"
TIMEOUT_SECONDS = 5
MAX_ATTEMPTS = 5
BACKOFF_SECONDS = 30  # 30 s, 1 min, 2 min, 4 min between attempts
MAX_DELIVERIES_PER_PASS = 50  # bounds how long one pass can spend on slow receivers


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance_seconds: int = 300) -> bool:
    """Whether `header` is a valid, fresh signature of `body` (what a receiver does)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def _describe(event: AlertEvent) -> str:
    rule = event.rule
    value = "no data" if event.value is None else f"{event.value:.4g}"
    verb = "FIRING" if event.kind == AlertEvent.Kind.FIRED else "resolved"
    scope = ", ".join(
        part
        for part in (
            rule.session_type and f"type {rule.session_type}",
            rule.user_id and f"user {rule.user_id}",
            rule.job and f"job {rule.job}",
        )
        if part
    )
    return (
        f"[{verb}] {rule.name}: {rule.get_metric_display()} is {value} "
        f"({rule.get_comparison_display()} {rule.threshold:g} fires)"
        + (f" for {scope}" if scope else "")
    )


def payload(event: AlertEvent) -> dict:
    """The JSON document a webhook receives for an event."""
    rule = event.rule
    return {
        "event": event.kind,
        "event_id": event.pk,
        "at": event.at.isoformat(),
        "value": event.value,
        "sessions": event.sessions,
        "message": event.message,
        "rule": {
            "id": rule.pk,
            "name": rule.name,
            "metric": rule.metric,
            "session_type": rule.session_type,
            "user_id": rule.user_id,
            "job": rule.job,
            "comparison": rule.comparison,
            "threshold": rule.threshold,
            "window_minutes": rule.window_minutes,
        },
        "url": settings.ALERTS_BASE_URL.rstrip("/") + reverse("dashboard:alerts"),
    }


def notify(event: AlertEvent) -> None:
    """Email the rule's recipients and queue a delivery to each of its enabled webhooks."""
    rule: AlertRule = event.rule
    event.message = event.message or _describe(event)
    recipients = rule.email_list
    if recipients:
        try:
            event.emailed = send_mail(
                subject=event.message[:200],
                message=f"{event.message}\n\nWindow: {rule.window_minutes} min. "
                f"Sessions in window: {event.sessions}.\n{payload(event)['url']}\n",
                from_email=None,
                recipient_list=recipients,
            ) and len(recipients)
        except Exception:
            logger.exception("alert %s: email failed", rule.name)
    event.save(update_fields=["message", "emailed"])
    body = payload(event)
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(target=target, event=event, payload=body, next_attempt_at=event.at)
        for target in rule.webhooks.all()
        if target.enabled
    )


def _attempt(delivery: WebhookDelivery, now) -> None:
    body = json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode()
    request = urllib.request.Request(  # noqa: S310 - URLField: http(s) only
        delivery.target.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "fiml-sessions-alerts",
            "X-Fiml-Event": str(delivery.payload.get("event", "")),
            "X-Fiml-Delivery": str(delivery.pk),
            SIGNATURE_HEADER: sign(delivery.target.secret, int(time.time()), body),
        },
    )
    delivery.attempts += 1
    delivery.last_attempt_at = now
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            delivery.status_code = response.status
        delivery.outcome = WebhookDelivery.Outcome.DELIVERED
        delivery.error = ""
        delivery.next_attempt_at = None
        return
    except urllib.error.HTTPError as exc:
        delivery.status_code = exc.code
        delivery.error = f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:  # refused, timeout, DNS, bad URL
        delivery.status_code = None
        delivery.error = f"{type(exc).__name__}: {exc}"[:1000]
    if delivery.attempts >= MAX_ATTEMPTS:
        delivery.outcome = WebhookDelivery.Outcome.FAILED
        delivery.next_attempt_at = None
    else:
        backoff = BACKOFF_SECONDS * 2 ** (delivery.attempts - 1)
        delivery.next_attempt_at = now + timedelta(seconds=backoff)


def deliver_due(now=None) -> dict:
    """Attempt every pending delivery that is due; counts by outcome."""
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(
            outcome=WebhookDelivery.Outcome.PENDING, next_attempt_at__lte=now
        )
        .select_related("target")
        .order_by("next_attempt_at")[:MAX_DELIVERIES_PER_PASS]
    )
    counts = {"delivered": 0, "retrying": 0, "gave_up": 0}
    for delivery in due:
        _attempt(delivery, now)
        delivery.save(
            update_fields=[
                "outcome",
                "attempts",
                "status_code",
                "error",
                "last_attempt_at",
                "next_attempt_at",
            ]
        )
        key = {"delivered": "delivered", "pending": "retrying", "failed": "gave_up"}
        counts[key[delivery.outcome]] += 1
    return counts
