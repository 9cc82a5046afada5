"""The dashboard roles and the permissions each holds (created by migration 0002)."""

ANALYSTS = "Analysts"
RETENTION_ADMINS = "Retention admins"

ANALYST_PERMISSIONS = [
    "view_dashboard",
    "export_sessions",
    "view_session",
    "view_sessionevent",
    "view_dailymetric",
    "view_jobrun",
    "view_retentionpolicy",
    "view_alertrule",
    "view_alertevent",
    "view_auditentry",
]
RETENTION_ADMIN_PERMISSIONS = [
    *ANALYST_PERMISSIONS,
    "manage_sessions",
    "run_jobs",
    "change_session",
    "delete_session",
    "add_retentionpolicy",
    "change_retentionpolicy",
    "delete_retentionpolicy",
    "add_alertrule",
    "change_alertrule",
    "delete_alertrule",
    "silence_alertrule",
    "view_webhooktarget",
    "add_webhooktarget",
    "change_webhooktarget",
    "delete_webhooktarget",
    "view_webhookdelivery",
]
ROLE_PERMISSIONS = {ANALYSTS: ANALYST_PERMISSIONS, RETENTION_ADMINS: RETENTION_ADMIN_PERMISSIONS}


def ensure_roles(group_model, permission_model) -> None:
    """Create both groups with their permissions; safe to call again."""
    for name, codenames in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=name)
        group.permissions.add(
            *permission_model.objects.filter(
                content_type__app_label="sessions_app", codename__in=codenames
            )
        )
