"""Error pages in the dashboard layout: 403 (which role, whom to ask), 404, 500, and 503 when
PostgreSQL is down."""

import logging
import sys

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template import loader

from sessions_app.middleware import DATABASE_DOWN

logger = logging.getLogger(__name__)

# How many administrators a 403 page names as the people to ask.
ADMINS_SHOWN = 3
RETRY_AFTER_SECONDS = 30


class RoleRequired(PermissionDenied):
    """A logged-in user lacks the permissions of a dashboard role."""

    def __init__(self, role: str, message: str):
        super().__init__(message)
        self.role = role


def _administrators() -> list[str]:
    """Usernames of active superusers: the people who can grant a role."""
    user_model = get_user_model()
    try:
        return list(
            user_model.objects.filter(is_superuser=True, is_active=True)
            .order_by(user_model.USERNAME_FIELD)
            .values_list(user_model.USERNAME_FIELD, flat=True)[:ADMINS_SHOWN]
        )
    except DATABASE_DOWN:
        return []


def permission_denied(request, exception=None):
    """403 in the dashboard layout: the role the page needs and whom to ask for it."""
    context = {
        "role": getattr(exception, "role", ""),
        "reason": str(exception or ""),
        "administrators": _administrators(),
    }
    body = loader.render_to_string("403.html", context, request)
    return HttpResponse(body, status=403)


def page_not_found(request, exception=None):
    """404 in the dashboard layout, with a way back."""
    body = loader.render_to_string("404.html", {}, request)
    return HttpResponse(body, status=404)


def database_unavailable(request, exception=None) -> HttpResponse:
    """503 "history unavailable": PostgreSQL cannot be reached.

    Rendered without the request: its user and messages live in PostgreSQL too.
    """
    logger.warning("PostgreSQL unavailable for %s: %s", request.path, exception)
    body = loader.render_to_string("errors/database_unavailable.html", {})
    response = HttpResponse(body, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def server_error(request):
    """500 in the dashboard layout; a PostgreSQL outage outside a view still gets the 503 page."""
    error = sys.exception()
    if isinstance(error, DATABASE_DOWN):
        return database_unavailable(request, error)
    # No request context: whatever broke may be what the context would need.
    body = loader.render_to_string("500.html", {})
    return HttpResponse(body, status=500)
