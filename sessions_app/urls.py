"""Dashboard URLs (namespace `dashboard`)."""

from django.urls import path, register_converter

from sessions_app import validation, views
from sessions_app.views import alerts as alert_views


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
    path("suggest/<slug:kind>", views.suggest, name="suggest"),
    path("views/", views.saved_views, name="saved_views"),
    path("views/<int:pk>/", views.saved_view, name="saved_view"),
    path("views/<int:pk>/edit", views.saved_view_edit, name="saved_view_edit"),
    path("views/<int:pk>/delete", views.saved_view_delete, name="saved_view_delete"),
    path("operations/", views.operations, name="operations"),
    path("operations/health", views.operations_health, name="operations_health"),
    path("operations/run/<slug:job>", views.run_job_now, name="run_job"),
    path("alerts/", alert_views.alerts, name="alerts"),
    path("alerts/<int:rule_id>/silence", alert_views.alert_silence, name="alert_silence"),
]
