"""Login pages (dashboard and admin) behind the failed-login limit of sessions_app.ratelimit."""

import math

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.forms.utils import ErrorDict
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from sessions_app import ratelimit

NON_FIELD_ERRORS = "__all__"


def _who(request) -> tuple[str, str]:
    """(client IP, username as posted)."""
    return ratelimit.client_ip(request.META), str(request.POST.get("username", ""))


def _message(retry_after: int) -> str:
    minutes = max(math.ceil(retry_after / 60), 1)
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed login attempts from your address. Try again in {minutes} {unit}."


def _blocked_response(request, template: str, form_class, context: dict, retry_after: int):
    """The login page again, status 429, its form carrying the reason (and no password check)."""
    form = form_class(request, initial={"username": request.POST.get("username", "")})
    # An unbound form with a preset error: binding it would run authenticate(), the very
    # thing a blocked client may not do.
    form._errors = ErrorDict(
        {NON_FIELD_ERRORS: form.error_class([_message(retry_after)], error_class="nonfield")}
    )
    response = render(request, template, {**context, "form": form}, status=429)
    response["Retry-After"] = str(retry_after)
    return response


class RateLimitedLoginView(auth_views.LoginView):
    """Django's LoginView; after too many failures for an IP + username it answers 429."""

    def post(self, request, *args, **kwargs):
        decision = ratelimit.login_blocked(*_who(request))
        if decision.blocked:
            return _blocked_response(
                request,
                self.get_template_names()[0],
                self.get_form_class(),
                self.get_context_data(),
                decision.retry_after,
            )
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        ratelimit.login_failed(*_who(self.request))
        return super().form_invalid(form)

    def form_valid(self, form):
        ratelimit.login_succeeded(*_who(self.request))
        return super().form_valid(form)


@sensitive_post_parameters()
@csrf_protect
@never_cache
def admin_login(request, extra_context=None):
    """The admin's own login page under the same limit (it is a second way to guess)."""
    if request.method == "POST":
        who = _who(request)
        decision = ratelimit.login_blocked(*who)
        if decision.blocked:
            from django.contrib.admin.forms import AdminAuthenticationForm

            context = {**admin.site.each_context(request), "title": "Log in", "subtitle": None}
            context["app_path"] = request.get_full_path()
            return _blocked_response(
                request, "admin/login.html", AdminAuthenticationForm, context, decision.retry_after
            )
    response = admin.site.login(request, extra_context)
    if request.method == "POST":
        # admin.site.login logs the user in and redirects on success; anything else failed.
        if response.status_code == 302 and request.user.is_authenticated:
            ratelimit.login_succeeded(*who)
        else:
            ratelimit.login_failed(*who)
    return response
