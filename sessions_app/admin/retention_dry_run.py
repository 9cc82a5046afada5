"""Retention dry run in the admin: a confirmation page before a policy shortens retention."""

from typing import TYPE_CHECKING

from django.contrib import admin
from django.template.response import TemplateResponse

from sessions_app.retention_preview import preview

CONFIRM_FIELD = "_confirm_retention"


if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin
else:  # a mixin for ModelAdmin subclasses; object at run time
    _AdminBase = object


class RetentionDryRunMixin(_AdminBase):
    """Before saving a policy that shortens retention, show what the next run would delete
    (by type) and ask for confirmation; the confirmed form posts again with CONFIRM_FIELD."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and CONFIRM_FIELD not in request.POST:
            obj = self.get_object(request, object_id) if object_id else None
            form_class = self.get_form(request, obj, change=obj is not None)
            form = form_class(request.POST, request.FILES, instance=obj)
            if form.is_valid() and self.has_change_permission(request, obj):
                shortened = preview(form.instance)
                if shortened:
                    return TemplateResponse(
                        request,
                        "admin/sessions_app/retentionpolicy/confirm_retention.html",
                        {
                            **self.admin_site.each_context(request),
                            "title": "Shorten retention?",
                            "opts": self.model._meta,
                            "object": obj or form.instance,
                            "rows": shortened,
                            "total_sessions": sum(row.sessions for row in shortened),
                            "total_events": sum(row.events for row in shortened),
                            "posted": [
                                (name, value)
                                for name, values in request.POST.lists()
                                if name != "csrfmiddlewaretoken"
                                for value in values
                            ],
                            "confirm_field": CONFIRM_FIELD,
                        },
                    )
        return super().changeform_view(request, object_id, form_url, extra_context)
