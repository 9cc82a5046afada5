"""What every dashboard view shares: the login + permission wall and page-or-partial rendering."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

from sessions_app.roles import ROLE_PERMISSIONS
from sessions_app.views.errors import RoleRequired

VIEW = "sessions_app.view_dashboard"
EXPORT = "sessions_app.export_sessions"
MANAGE = "sessions_app.manage_sessions"
RUN_JOBS = "sessions_app.run_jobs"


def role_for(permissions: tuple[str, ...]) -> str:
    """The first dashboard role (roles.py) that holds all of `permissions`."""
    codenames = {name.split(".", 1)[1] for name in permissions}
    for role, granted in ROLE_PERMISSIONS.items():
        if codenames <= set(granted):
            return role
    return "a superuser"


def dashboard_view(*permissions: str) -> Callable:
    """Anonymous users go to the login page; logged-in users without the permissions get a 403
    page naming the role they need."""
    required = (VIEW, *permissions)
    role = role_for(required)

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapped(request, *args, **kwargs):
            if not request.user.has_perms(required):
                raise RoleRequired(role, f"This needs the {role} role.")
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
