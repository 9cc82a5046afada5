"""Top-level URLs: dashboard, admin, REST API, health."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from sessions_app import auth_views as login_views
from sessions_app import health, prometheus
from sessions_app.api import api

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", prometheus.metrics_view, name="prometheus_metrics"),
    # Both login pages count failed attempts (sessions_app.ratelimit).
    path("accounts/login/", login_views.RateLimitedLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/login/", login_views.admin_login),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("sessions_app.urls")),
]

# Error pages in the dashboard layout (sessions_app.views.errors).
handler403 = "sessions_app.views.errors.permission_denied"
handler404 = "sessions_app.views.errors.page_not_found"
handler500 = "sessions_app.views.errors.server_error"
