"""Django admin for every model (django-celery-beat registers its own schedule admin)."""

from django.contrib import admin

from sessions_app.admin import (
    alerts,
    schedules,  # noqa: F401 - tidies django-celery-beat's admin
)
from sessions_app.admin.analyst import SavedViewAdmin
from sessions_app.admin.operations import (
    ApiKeyAdmin,
    DailyMetricAdmin,
    JobRunAdmin,
    QuarantinedSessionAdmin,
    RetentionPolicyAdmin,
)
from sessions_app.admin.sessions import SessionAdmin
from sessions_app.models import (
    ApiKey,
    DailyMetric,
    JobRun,
    QuarantinedSession,
    RetentionPolicy,
    SavedView,
    Session,
)

admin.site.register(Session, SessionAdmin)
admin.site.register(RetentionPolicy, RetentionPolicyAdmin)
admin.site.register(DailyMetric, DailyMetricAdmin)
admin.site.register(JobRun, JobRunAdmin)
admin.site.register(ApiKey, ApiKeyAdmin)

admin.site.site_header = "FIML Sessions administration"
admin.site.site_title = "FIML Sessions administration"
admin.site.index_title = "Sessions, retention and schedules"
admin.site.register(QuarantinedSession, QuarantinedSessionAdmin)
alerts.register(admin.site)
admin.site.register(SavedView, SavedViewAdmin)
