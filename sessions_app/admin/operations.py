"""Admin for the operational models: retention policy, daily metrics, job runs, API keys."""

import logging

from django import forms
from django.contrib import admin, messages

from sessions_app import apikeys
from sessions_app.admin.retention_dry_run import RetentionDryRunMixin
from sessions_app.exceptions import StoreUnavailable
from sessions_app.models import ApiKey, JobRun, RetentionPolicy
from sessions_app.policies import get_effective_policy

logger = logging.getLogger(__name__)


class RetentionPolicyForm(forms.ModelForm):
    class Meta:
        model = RetentionPolicy
        fields = ("session_type", *RetentionPolicy.POLICY_FIELDS)


class RetentionPolicyAdmin(RetentionDryRunMixin, admin.ModelAdmin):
    form = RetentionPolicyForm
    list_display = ("__str__", *RetentionPolicy.POLICY_FIELDS, "updated_at")
    readonly_fields = ("effective", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # The global row stays global; an override keeps its type.
        if obj is not None:
            return ("session_type", *self.readonly_fields)
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_global:
            return False  # every type falls back to it
        return super().has_delete_permission(request, obj)

    @admin.display(description="in force")
    def effective(self, obj: RetentionPolicy) -> str:
        if obj.pk is None or obj.is_global:
            return "-"
        policy = get_effective_policy(obj.session_type)
        return ", ".join(
            f"{name.replace('_', ' ')} {getattr(policy, name)}"
            for name in RetentionPolicy.POLICY_FIELDS
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        changes = {name: form.cleaned_data.get(name) for name in form.changed_data}
        logger.info(
            "retention policy %r %s by %s: %s",
            obj.session_type or "global",
            "changed" if change else "created",
            request.user,
            changes,
        )

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        logger.info("retention policy %r deleted by %s", obj.session_type, request.user)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class DailyMetricAdmin(ReadOnlyAdmin):
    list_display = (
        "day",
        "session_type",
        "sessions_started",
        "sessions_completed",
        "queries",
        "cache_hits",
        "avg_duration_seconds",
        "p95_duration_seconds",
        "computed_at",
    )
    list_filter = ("session_type",)
    date_hierarchy = "day"


class JobRunAdmin(ReadOnlyAdmin):
    list_display = ("job", "started_at", "outcome", "duration_ms", "counts", "short_error")
    list_filter = ("job", "outcome")
    date_hierarchy = "started_at"

    @admin.display(description="error")
    def short_error(self, obj: JobRun) -> str:
        return obj.error[:120]


class ApiKeyAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiKey
        fields = ("name", "scopes")


class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "prefix",
        "scopes",
        "created_at",
        "created_by",
        "last_used_at",
        "active",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    list_select_related = ("created_by",)
    search_fields = ("name", "prefix")
    actions = ("revoke",)
    readonly_fields = ("prefix", "scopes", "created_at", "created_by", "last_used_at", "revoked_at")

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "scopes")
        return ("name", *self.readonly_fields)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    @admin.display(boolean=True, description="active")
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        key, secret = apikeys.create_api_key(
            form.cleaned_data["name"], form.cleaned_data["scopes"], created_by=request.user
        )
        # The admin goes on with `obj` (log entry, redirect): make it the created row.
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(key, field.attname))
        obj._state.adding = False
        obj._state.db = key._state.db
        self.message_user(
            request,
            f"API key created. Copy it now, it is not shown again: {secret}",
            messages.WARNING,
        )
        logger.info("API key %s (%s) created by %s", key.prefix, key.name, request.user)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            try:
                apikeys.revoke(key)
            except StoreUnavailable as exc:
                self.message_user(request, f"API key {key.prefix}: {exc}", messages.ERROR)
                return
            logger.info("API key %s (%s) revoked by %s", key.prefix, key.name, request.user)
        self.message_user(request, f"Revoked {len(keys)} API key(s).", messages.SUCCESS)


class QuarantinedSessionAdmin(admin.ModelAdmin):
    """Sessions the archiver could not write: read-only, with the database's error."""

    list_display = ("session_id", "user_id", "session_type", "quarantined_at", "attempts", "why")
    list_filter = ("session_type",)
    search_fields = ("session_id", "user_id")
    ordering = ("-quarantined_at",)
    readonly_fields = [
        "session_id",
        "user_id",
        "session_type",
        "quarantined_at",
        "attempts",
        "error",
        "snapshot",
    ]

    @admin.display(description="error")
    def why(self, obj) -> str:
        return obj.error[:160]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
