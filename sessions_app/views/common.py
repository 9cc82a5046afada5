"""What every dashboard view shares: the login + permission wall and page-or-partial rendering."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

VIEW = "sessions_app.view_dashboard"
EXPORT = "sessions_app.export_sessions"
MANAGE = "sessions_app.manage_sessions"
RUN_JOBS = "sessions_app.run_jobs"


def dashboard_view(*permissions: str) -> Callable:
    """Anonymous users go to the login page; logged-in users without the permissions get 403."""
    required = (VIEW, *permissions)

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapped(request, *args, **kwargs):
            if not request.user.has_perms(required):
                raise PermissionDenied("You do not have access to this part of the dashboard.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def wants_partial(request) -> bool:
    """An HTMX swap wants only the partial; a history restore needs the whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def render_page(request, page: str, partial: str, context: dict, status: int = 200):
    """The full page, or just its partial for an HTMX request (same context either way)."""
    template = partial if wants_partial(request) else page
    response = render(request, template, context, status=status)
    # Browsers and proxies must not serve a cached partial for a full-page load.
    patch_vary_headers(response, ("HX-Request",))
    return response
