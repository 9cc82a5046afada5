"""Operations-page panels owned by alerts/audit: policy consistency flags and the audit trail."""

from django import template

from sessions_app.audit import AuditEntry
from sessions_app.policy_checks import current_inconsistencies

register = template.Library()

AUDIT_ROWS = 20
AUDIT_TYPES = ("retention_policy", "alert_rule", "periodic_task", "api_key", "job", "session")


@register.inclusion_tag("partials/policy_consistency.html")
def policy_consistency():
    """Retention rows whose values in force contradict each other (one small query)."""
    return {"problems": current_inconsistencies()}


@register.inclusion_tag("partials/audit_trail.html", takes_context=True)
def audit_trail(context):
    """The latest audit entries, optionally of one object type (?audit=<type>)."""
    request = context["request"]
    wanted = request.GET.get("audit", "")
    entries = AuditEntry.objects.all()
    if wanted in AUDIT_TYPES:
        entries = entries.filter(object_type=wanted)
    else:
        wanted = ""
    return {
        "entries": list(entries[:AUDIT_ROWS]),
        "audit_types": AUDIT_TYPES,
        "wanted": wanted,
        "user": context.get("user"),
        "perms": context.get("perms"),
        "request": request,
    }
