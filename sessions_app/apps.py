from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "FIML Sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Registers the signal that drops cached retention policies when an admin edits one.
        from sessions_app import policies  # noqa: F401
