from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "FIML Sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Registers the signals that drop cached retention policies when an admin edits one
        # and keep the cleanup schedule in step with the global policy's interval.
        from sessions_app import audit, policies, prometheus, schedules  # noqa: F401
        from sessions_app.alerts import tasks  # noqa: F401 - registers the Celery task

        audit.connect_signals()
        prometheus.connect_signals()
