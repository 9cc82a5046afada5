"""Dashboard URLs (namespace `dashboard`)."""

from django.urls import path

from sessions_app import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
]
