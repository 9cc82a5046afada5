"""Response headers and failure pages that every dashboard request shares.

- ContentSecurityPolicyMiddleware: the CSP header (Django 5.2 has none built in).
- DatabaseUnavailableMiddleware: a clear "history unavailable" page (503) instead of a 500 when
  PostgreSQL cannot be reached.
"""

import logging

from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

# Scripts only from our own origin (htmx, Chart.js and our glue are files under /static/; chart
# data is JSON in <script type="application/json">, which never runs). Inline style attributes
# stay allowed: Django's admin and a few of our admin templates use them.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

# What a lost or refused PostgreSQL connection raises (psycopg errors arrive wrapped in these).
DATABASE_DOWN = (OperationalError, InterfaceError)


class ContentSecurityPolicyMiddleware:
    """Adds the Content-Security-Policy header to every response that has none."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class DatabaseUnavailableMiddleware:
    """A view that fails because PostgreSQL is down answers the "history unavailable" page.

    Failures outside views (e.g. saving the login session) reach handler500, which does the
    same (sessions_app.views.errors.server_error).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_DOWN):
            from sessions_app.views.errors import database_unavailable

            return database_unavailable(request, exception)
        return None
