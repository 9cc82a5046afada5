"""django-celery-beat's admin, tidied: no solar or clocked schedules unless some exist, and the
crontab's meaning shown as a read-only field (no inline script, so it passes the CSP)."""

from typing import TYPE_CHECKING

from django.contrib import admin
from django_celery_beat.admin import (
    ClockedScheduleAdmin,
    PeriodicTaskAdmin,
    SolarScheduleAdmin,
)
from django_celery_beat.models import ClockedSchedule, PeriodicTask, SolarSchedule


def _in_use(model) -> bool:
    return model.objects.exists()


if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin
else:  # a mixin for ModelAdmin subclasses; object at run time
    _AdminBase = object


class HiddenUnlessUsed(_AdminBase):
    """Leaves the admin index (and the add button) until a row exists; URLs keep working."""

    def has_module_permission(self, request):
        return _in_use(self.model) and super().has_module_permission(request)

    def has_add_permission(self, request):
        return _in_use(self.model) and super().has_add_permission(request)


class TidySolarScheduleAdmin(HiddenUnlessUsed, SolarScheduleAdmin):
    pass


class TidyClockedScheduleAdmin(HiddenUnlessUsed, ClockedScheduleAdmin):
    pass


class TidyPeriodicTaskAdmin(PeriodicTaskAdmin):
    """The package's form template writes "Translation: undefined" under the crontab field when
    no crontab is picked, with an inline script; the read-only field says it instead."""

    change_form_template = "admin/change_form.html"

    @admin.display(description="Crontab in words")
    def crontab_translation(self, obj):
        if obj is None or obj.crontab is None:
            return "—"
        return obj.crontab.human_readable

    def get_fieldsets(self, request, obj=None):
        unused = set()
        if not (obj is not None and obj.solar_id) and not _in_use(SolarSchedule):
            unused.add("solar")
        if not (obj is not None and obj.clocked_id) and not _in_use(ClockedSchedule):
            unused.add("clocked")
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f not in unused]})
            for name, options in super().get_fieldsets(request, obj)
        ]


for model, model_admin in (
    (SolarSchedule, TidySolarScheduleAdmin),
    (ClockedSchedule, TidyClockedScheduleAdmin),
    (PeriodicTask, TidyPeriodicTaskAdmin),
):
    admin.site.unregister(model)
    admin.site.register(model, model_admin)
