"""Dashboard URLs (namespace `dashboard`)."""

from django.urls import path, register_converter

from sessions_app import validation, views


class ExportFormat:
    regex = "csv|json"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class SessionId:
    """A session id as the store accepts it (generated UUIDv7 or caller-chosen)."""

    regex = validation.SESSION_ID_PATTERN

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value) -> str:
        return str(value)


register_converter(ExportFormat, "fmt")
register_converter(SessionId, "session_id")

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("metrics.<fmt:fmt>", views.export_metrics, name="export_metrics"),
    path("history/", views.history_page, name="history"),
    path("history/export.<fmt:fmt>", views.history_export, name="history_export"),
    path("sessions/<session_id:session_id>/", views.session_detail, name="session"),
    path("sessions/<session_id:session_id>/extend", views.session_extend, name="session_extend"),
    path("sessions/<session_id:session_id>/end", views.session_end, name="session_end"),
    path("sessions/<session_id:session_id>/archive", views.session_archive, name="session_archive"),
    path("sessions/<session_id:session_id>/delete", views.session_delete, name="session_delete"),
    path("live/", views.live, name="live"),
    path("users/", views.user_lookup, name="users"),
    path("users/<path:user_id>/", views.user_detail, name="user"),
    path("operations/", views.operations, name="operations"),
    path("operations/health", views.operations_health, name="operations_health"),
    path("operations/run/<slug:job>", views.run_job_now, name="run_job"),
]
