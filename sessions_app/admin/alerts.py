"""Admin for alert rules, webhook targets and deliveries, alert events and the audit trail."""

from django import forms
from django.contrib import admin

from sessions_app.admin.operations import ReadOnlyAdmin
from sessions_app.alerts.models import AlertEvent, AlertRule, WebhookDelivery, WebhookTarget
from sessions_app.audit import AuditEntry


class AlertRuleAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "metric",
        "session_type",
        "comparison",
        "threshold",
        "window_minutes",
        "state",
        "last_value",
        "silenced_until",
        "enabled",
    )
    list_filter = ("state", "metric", "enabled")
    search_fields = ("name",)
    filter_horizontal = ("webhooks",)
    readonly_fields = ("state", "last_value", "last_evaluated_at", "last_notified_at")
    exclude = ("recent_values",)


class WebhookTargetForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=True),
        help_text="Shared secret: the X-Fiml-Signature header is signed with it.",
    )

    class Meta:
        model = WebhookTarget
        fields = ("name", "url", "secret", "enabled")


class WebhookTargetAdmin(admin.ModelAdmin):
    form = WebhookTargetForm
    list_display = ("name", "url", "enabled", "created_at")


class AlertEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "rule", "kind", "value", "threshold", "sessions", "emailed")
    list_filter = ("kind", "rule")
    list_select_related = ("rule",)
    date_hierarchy = "at"


class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "target",
        "event",
        "outcome",
        "attempts",
        "status_code",
        "last_attempt_at",
        "next_attempt_at",
        "error",
    )
    list_filter = ("outcome", "target")
    list_select_related = ("target", "event__rule")


class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = (
        "at",
        "actor_name",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "source",
    )
    list_filter = ("object_type", "action", "source", ("at", admin.DateFieldListFilter))
    search_fields = ("actor_name", "object_id", "object_repr")
    search_help_text = "User name, object id or name."
    date_hierarchy = "at"
    readonly_fields = [field.name for field in AuditEntry._meta.concrete_fields]

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("sessions_app.view_auditentry")


def register(site: admin.AdminSite) -> None:
    site.register(AlertRule, AlertRuleAdmin)
    site.register(WebhookTarget, WebhookTargetAdmin)
    site.register(AlertEvent, AlertEventAdmin)
    site.register(WebhookDelivery, WebhookDeliveryAdmin)
    site.register(AuditEntry, AuditEntryAdmin)
