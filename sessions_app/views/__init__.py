"""Dashboard views, one module per page area; each serves its page and its HTMX partial."""

from sessions_app.views.analyst import (
    saved_view,
    saved_view_delete,
    saved_view_edit,
    saved_views,
    suggest,
)
from sessions_app.views.history import history_export, history_page
from sessions_app.views.live import live
from sessions_app.views.operations import operations, operations_health, run_job_now
from sessions_app.views.overview import export_metrics, overview
from sessions_app.views.sessions import (
    session_archive,
    session_delete,
    session_detail,
    session_end,
    session_extend,
)
from sessions_app.views.users import user_detail, user_lookup

__all__ = [
    "export_metrics",
    "history_export",
    "history_page",
    "live",
    "operations",
    "operations_health",
    "overview",
    "run_job_now",
    "saved_view",
    "saved_view_delete",
    "saved_view_edit",
    "saved_views",
    "session_archive",
    "session_delete",
    "session_detail",
    "session_end",
    "session_extend",
    "suggest",
    "user_detail",
    "user_lookup",
]
