"""Alerts: rules with their state and a sparkline of the metric against the threshold, recent
events; retention admins can silence a rule."""

from datetime import timedelta

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from sessions_app.alerts.models import AlertEvent, AlertRule
from sessions_app.alerts.sparkline import sparkline
from sessions_app.views.common import dashboard_view, render_page

SILENCE = "sessions_app.silence_alertrule"
RECENT_EVENTS = 30
# Silence durations offered on the page, in hours (0 = unsilence).
SILENCE_CHOICES = (1, 4, 24, 168)


@dashboard_view()
def alerts(request):
    """Rules, state and sparkline; recent fired/resolved events."""
    now = timezone.now()
    rules = list(AlertRule.objects.all())
    context = {
        "active_nav": "alerts",
        "rows": [
            {
                "rule": rule,
                "silenced": bool(rule.silenced_until and rule.silenced_until > now),
                "sparkline": sparkline(rule.recent_values, rule.threshold),
            }
            for rule in rules
        ],
        "events": AlertEvent.objects.select_related("rule")[:RECENT_EVENTS],
        "can_silence": request.user.has_perm(SILENCE),
        "silence_choices": SILENCE_CHOICES,
    }
    return render_page(request, "dashboard/alerts.html", "partials/alerts_body.html", context)


@dashboard_view(SILENCE)
@require_POST
def alert_silence(request, rule_id: int):
    """Silence a rule's notifications for `hours` (0 lifts the silence)."""
    from sessions_app.alerts.evaluate import silence

    rule = get_object_or_404(AlertRule, pk=rule_id)
    try:
        hours = int(request.POST.get("hours", ""))
    except ValueError:
        hours = -1
    if hours not in (0, *SILENCE_CHOICES):
        allowed = ", ".join(str(h) for h in (0, *SILENCE_CHOICES))
        messages.error(request, f"hours: must be one of {allowed}.")
        return redirect("dashboard:alerts")
    silence(rule, timezone.now() + timedelta(hours=hours) if hours else None)
    if hours:
        messages.success(request, f"Silenced “{rule.name}” for {hours} h.")
    else:
        messages.success(request, f"“{rule.name}” notifies again.")
    return redirect("dashboard:alerts")
