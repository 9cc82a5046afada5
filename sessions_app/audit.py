"""Audit trail: who changed what, when, with the values before and after.

Model changes (retention policies, alert rules, periodic tasks, API keys) are caught by signals,
so every path records them (admin, shell, schedule sync); the acting user comes from the
request through `AuditActorMiddleware`. Actions that are not model saves (manual job runs,
session extend/end/archive/delete, API key revoke) call `record` where they happen.
"""

import contextvars
import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save
from django.utils import timezone

logger = logging.getLogger(__name__)

_actor: contextvars.ContextVar[Any] = contextvars.ContextVar("audit_actor", default=None)


class AuditEntry(models.Model):
    """One audited change or action; written once, never edited."""

    class Action(models.TextChoices):
        CREATE = "create", "Created"
        CHANGE = "change", "Changed"
        DELETE = "delete", "Deleted"
        REVOKE = "revoke", "Revoked"
        RUN_JOB = "run_job", "Ran a job"
        EXTEND = "extend", "Extended session"
        END = "end", "Ended session"
        ARCHIVE = "archive", "Archived session"
        DELETE_SESSION = "delete_session", "Deleted session"

    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Kept as text too: the trail must still say who after the user is deleted.
    actor_name = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=16, choices=Action.choices)
    object_type = models.CharField(max_length=32)
    object_id = models.CharField(max_length=64, blank=True, default="")
    object_repr = models.CharField(max_length=200, blank=True, default="")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    source = models.CharField(max_length=16, blank=True, default="")  # admin, dashboard, cli...

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["object_type", "-at"], name="audit_type_at_idx"),
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name or 'system'} {self.action} {self.object_type} {self.object_id}"


class AuditActorMiddleware:
    """Makes the request's user the actor of whatever is audited while it runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _actor.set(request)
        try:
            return self.get_response(request)
        finally:
            _actor.reset(token)


def _who(actor: Any) -> tuple[Any, str, str]:
    """(user or None, name, source) from a request, a user, a string or the context."""
    actor = actor if actor is not None else _actor.get()
    if actor is None:
        return None, "", "system"
    if isinstance(actor, str):
        return None, actor, actor
    user = getattr(actor, "user", actor)  # a request carries .user
    source = "admin" if getattr(actor, "path", "").startswith("/admin/") else "dashboard"
    if getattr(user, "is_authenticated", False):
        return user, user.get_username(), source
    return None, "", source


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    import json

    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def record(
    action: str,
    object_type: str,
    object_id: Any = "",
    *,
    actor: Any = None,
    object_repr: str = "",
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEntry:
    """Write one audit entry; `actor` is a request, a user or a name (default: the request's)."""
    user, name, source = _who(actor)
    return AuditEntry.objects.create(
        at=timezone.now(),
        actor=user,
        actor_name=name,
        action=action,
        object_type=object_type,
        object_id=str(object_id)[:64],
        object_repr=str(object_repr)[:200],
        before=_jsonable(before),
        after=_jsonable(after),
        source=source,
    )


def record_sessions(action: str, session_ids: Iterable, *, actor: Any = None, **after) -> int:
    """One entry per session acted on (one INSERT); the number written."""
    user, name, source = _who(actor)
    now = timezone.now()
    rows = [
        AuditEntry(
            at=now,
            actor=user,
            actor_name=name,
            action=action,
            object_type="session",
            object_id=str(session_id),
            after=_jsonable(after) or None,
            source=source,
        )
        for session_id in session_ids
    ]
    AuditEntry.objects.bulk_create(rows)
    return len(rows)


# ---- model changes, caught by signals ------------------------------------------------------

# Fields never recorded: secrets, and bookkeeping that changes on its own (beat writes
# last_run_at and total_run_count on every run; those saves are not changes anyone made).
IGNORED_FIELDS = {
    "hashed_secret",
    "secret",
    "updated_at",
    "last_used_at",
    "last_run_at",
    "total_run_count",
    "date_changed",
    "no_changes",
    "state",
    "last_value",
    "last_evaluated_at",
    "last_notified_at",
    "recent_values",
}


def snapshot(instance: models.Model) -> dict:
    """The audited fields of a row as JSON-ready values (foreign keys by their text)."""
    values = {}
    for field in instance._meta.concrete_fields:
        if field.name in IGNORED_FIELDS or field.primary_key:
            continue
        if field.is_relation:
            related = getattr(instance, field.name, None)
            values[field.name] = str(related) if related is not None else None
        else:
            values[field.name] = field.value_from_object(instance)
    return _jsonable(values)


def _audited_models() -> dict[type[models.Model], str]:
    from django_celery_beat.models import PeriodicTask

    from sessions_app.alerts.models import AlertRule, WebhookTarget
    from sessions_app.models import ApiKey, RetentionPolicy

    return {
        RetentionPolicy: "retention_policy",
        AlertRule: "alert_rule",
        WebhookTarget: "webhook_target",
        PeriodicTask: "periodic_task",
        ApiKey: "api_key",
    }


def _before_save(sender, instance, raw=False, **kwargs):
    if raw or instance.pk is None:
        instance._audit_before = None
        return
    old = sender._default_manager.filter(pk=instance.pk).first()
    instance._audit_before = snapshot(old) if old is not None else None


def _after_save(sender, instance, created, raw=False, **kwargs):
    if raw:
        return
    after = snapshot(instance)
    before = getattr(instance, "_audit_before", None)
    if created or before is None:
        record(
            "create", _audited_models()[sender], instance.pk, object_repr=str(instance), after=after
        )
        return
    changed = {name for name in after if after.get(name) != before.get(name)}
    if not changed:
        return  # bookkeeping-only save (e.g. beat's last_run_at)
    record(
        "change",
        _audited_models()[sender],
        instance.pk,
        object_repr=str(instance),
        before={name: before.get(name) for name in sorted(changed)},
        after={name: after[name] for name in sorted(changed)},
    )


def _after_delete(sender, instance, **kwargs):
    record(
        "delete",
        _audited_models()[sender],
        instance.pk,
        object_repr=str(instance),
        before=snapshot(instance),
    )


def connect_signals() -> None:
    """Audit every save and delete of the audited models (called once from AppConfig.ready)."""
    for model in _audited_models():
        uid = f"audit-{model._meta.label}"
        pre_save.connect(_before_save, sender=model, dispatch_uid=uid + "-pre")
        post_save.connect(_after_save, sender=model, dispatch_uid=uid + "-post")
        post_delete.connect(_after_delete, sender=model, dispatch_uid=uid + "-delete")
