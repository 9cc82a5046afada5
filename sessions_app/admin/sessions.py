"""Admin for archived sessions and their timeline, plus a page of live sessions (the store).

Session and event tables grow into the millions: their change lists never run a full COUNT(*)
(Postgres' row estimate stands in for unfiltered lists) and searches are exact matches that hit
an index.
"""

import contextlib
import logging
from collections.abc import Sequence
from functools import cached_property

from django.contrib import admin, messages
from django.contrib.admin import DateFieldListFilter
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import DatabaseError, connection
from django.db.models import F, Q, QuerySet, Sum
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from sessions_app import archive, audit, validation
from sessions_app.archive import timeline
from sessions_app.exceptions import StoreError, StoreUnavailable
from sessions_app.models import Session

logger = logging.getLogger(__name__)

# Below this many rows an exact COUNT(*) is cheap, and more accurate than the estimate.
ESTIMATE_ABOVE_ROWS = 100_000
# Archive-now and extend act on live sessions one store call each: keep a selection bounded.
MAX_ACTION_SESSIONS = 1000
EVENTS_PER_PAGE = 50
LIVE_PER_PAGE = 50


def estimated_row_count(table: str) -> int:
    """Postgres' planner estimate of a table's rows (pg_class.reltuples, summed over the
    partitions of a partitioned table; -1 if never analysed)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(c.reltuples)::bigint FROM pg_partition_tree(%s::regclass) t "
            "JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf AND c.reltuples >= 0",
            [table],
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else -1


class EstimatedCountPaginator(Paginator):
    """Counts an unfiltered list with Postgres' estimate instead of a full COUNT(*)."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and not queryset.query.where:
            estimate = estimated_row_count(queryset.model._meta.db_table)
            if estimate > ESTIMATE_ABOVE_ROWS:
                return estimate
        return super().count


def _store():
    from sessions_app.store import get_session_store

    return get_session_store()


class LargeTableAdmin(admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50


class ArchivedTimeline(Sequence):
    """An archived session's timeline for the admin's paginator: each page is one read."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        row = (
            Session.objects.filter(pk=session_id)
            .values_list("query_count", "message_count", "tool_call_count", "archived_at")
            .first()
        )
        self.total = sum(row[:3]) if row else 0
        self.archived_at = row[3] if row else None  # reads search only its day's partition

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, _ = index.indices(self.total)
            count = max(stop - start, 0)
            return timeline.read_page(self.session_id, start, count, self.archived_at)
        events = timeline.read_page(self.session_id, index, 1, self.archived_at)
        if not events:
            raise IndexError(index)
        return events[0]


class SessionAdmin(LargeTableAdmin):
    list_display = (
        "id",
        "user_id",
        "session_type",
        "status",
        "created_at",
        "archived_at",
        "query_count",
        "duration",
    )
    list_filter = (
        "session_type",
        "status",
        ("created_at", DateFieldListFilter),
        ("archived_at", DateFieldListFilter),
    )
    # The search box is shown for these; get_search_results does the exact-match search.
    search_fields = ("user_id",)
    search_help_text = "Exact session id, user id or tag."
    ordering = ("-created_at", "-id")
    actions = ("archive_now", "extend_24h", "delete_selected")
    fieldsets = (
        (None, {"fields": ("id", "user_id", "session_type", "status", "assets", "tags")}),
        ("About", {"fields": ("purpose", "source", "device", "ip", "preferences", "metadata")}),
        (
            "Times",
            {
                "fields": (
                    "created_at",
                    "last_activity_at",
                    "expires_at",
                    "ended_at",
                    "archived_at",
                    "duration",
                )
            },
        ),
        (
            "Counters",
            {
                "fields": (
                    "query_count",
                    "cache_hits",
                    "cache_hit_rate",
                    "error_count",
                    "message_count",
                    "tool_call_count",
                    "total_execution_ms",
                    "tokens_in",
                    "tokens_out",
                    "cost",
                )
            },
        ),
        ("State", {"fields": ("context", "intermediate_results")}),
    )

    def get_readonly_fields(self, request, obj=None):
        # An archived session is a record of what happened: nothing in it is edited by hand.
        return [
            *(field.name for field in Session._meta.concrete_fields),
            "duration",
            "cache_hit_rate",
        ]

    def has_add_permission(self, request):
        return False  # sessions are created by clients through the store

    def has_manage_permission(self, request):
        return request.user.has_perm("sessions_app.manage_sessions")

    @admin.display(description="duration", ordering="duration_seconds")
    def duration(self, obj: Session) -> str:
        seconds = int(obj.duration_seconds or 0)
        hours, rest = divmod(seconds, 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"

    @admin.display(description="cache hit rate")
    def cache_hit_rate(self, obj: Session) -> str:
        if not obj.query_count:
            return "-"
        return f"{100 * obj.cache_hits / obj.query_count:.1f} %"

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(user_id=term) | Q(tags__contains=[term])
        with contextlib.suppress(ValueError):  # not a session id: search user and tag only
            condition |= Q(id=validation.session_id(term))
        return queryset.filter(condition), False

    # ---- timeline on the change page, one page of events at a time ------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        try:
            session_id = validation.session_id(unquote(str(object_id)))
        except ValueError:
            session_id = None
        if session_id is not None:
            paginator = Paginator(ArchivedTimeline(session_id), EVENTS_PER_PAGE)
            extra_context["events_page"] = paginator.get_page(request.GET.get("events_page"))
        return super().change_view(request, object_id, form_url, extra_context)

    # ---- deleting: batched SQL, no per-event cascade or listing --------------------------

    def get_deleted_objects(self, objs, request):
        ids = [obj.pk for obj in objs] if isinstance(objs, list) else None
        sessions = Session.objects.filter(pk__in=ids) if ids is not None else objs
        total = sessions.count()
        shown = [str(session) for session in sessions[:100]]
        if total > len(shown):
            shown.append(f"… and {total - len(shown)} more sessions")
        events = (
            sessions.aggregate(n=Sum(F("query_count") + F("message_count") + F("tool_call_count")))[
                "n"
            ]
            or 0
        )
        counts = {"sessions": total, "timeline events": events}
        perms_needed = set() if self.has_delete_permission(request) else {"session"}
        return shown, counts, perms_needed, []

    def delete_model(self, request, obj):
        archive.delete_archived_sessions([obj.pk])
        audit.record_sessions("delete_session", [obj.pk], actor=request)
        logger.info("admin %s deleted archived session %s", request.user, obj.pk)

    def delete_queryset(self, request, queryset):
        deleted = 0
        while True:
            ids = list(queryset.values_list("pk", flat=True)[: archive.DELETE_BATCH_SIZE])
            if not ids:
                break
            deleted += archive.delete_archived_sessions(ids)
            audit.record_sessions("delete_session", ids, actor=request)
        logger.info("admin %s deleted %d archived sessions", request.user, deleted)

    # ---- actions through the store ------------------------------------------------------

    def _selected_ids(self, request, queryset) -> list[str] | None:
        ids = [str(pk) for pk in queryset.values_list("pk", flat=True)[: MAX_ACTION_SESSIONS + 1]]
        if len(ids) > MAX_ACTION_SESSIONS:
            self.message_user(
                request, f"Select at most {MAX_ACTION_SESSIONS} sessions.", messages.ERROR
            )
            return None
        return ids

    @admin.action(description="Archive selected sessions now", permissions=["manage"])
    def archive_now(self, request, queryset):
        ids = self._selected_ids(request, queryset)
        if ids is not None:
            archive_live_sessions(self, request, ids)

    @admin.action(description="Extend selected live sessions by 24 hours", permissions=["manage"])
    def extend_24h(self, request, queryset):
        ids = self._selected_ids(request, queryset)
        if ids is not None:
            extend_live_sessions(self, request, ids, 24)

    # ---- live sessions (Redis) page -------------------------------------------------------

    def get_urls(self):
        live = path(
            "live/",
            self.admin_site.admin_view(self.live_view),
            name="sessions_app_session_live",
        )
        return [live, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            "live_url": reverse("admin:sessions_app_session_live"),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    def live_view(self, request):
        """Live sessions from the store, with archive / extend / delete for managers."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self._live_action(request)
        try:
            page = max(int(request.GET.get("page", 1)), 1)
        except ValueError:
            page = 1
        context = {
            **self.admin_site.each_context(request),
            "title": "Live sessions",
            "opts": self.opts,
            "page": page,
            "can_manage": self.has_manage_permission(request),
            "can_delete": self.has_delete_permission(request),
            "changelist_url": reverse("admin:sessions_app_session_changelist"),
        }
        try:
            store = _store()
            sessions = store.list_live_sessions(
                limit=LIVE_PER_PAGE + 1, offset=(page - 1) * LIVE_PER_PAGE
            )
            context.update(
                sessions=sessions[:LIVE_PER_PAGE],
                has_next=len(sessions) > LIVE_PER_PAGE,
                counts=store.live_counts(),
            )
        except StoreError as exc:
            context["store_error"] = str(exc)
        return TemplateResponse(request, "admin/sessions_app/session/live_sessions.html", context)

    def _live_action(self, request):
        action = request.POST.get("action", "")
        ids = request.POST.getlist("ids")
        needs = {"archive": self.has_manage_permission, "extend": self.has_manage_permission}
        allowed = needs.get(action, self.has_delete_permission if action == "delete" else None)
        if allowed is None:
            self.message_user(request, f"Unknown action {action!r}.", messages.ERROR)
        elif not allowed(request):
            raise PermissionDenied
        elif not ids:
            self.message_user(request, "Select at least one session.", messages.WARNING)
        elif len(ids) > MAX_ACTION_SESSIONS:
            self.message_user(
                request, f"Select at most {MAX_ACTION_SESSIONS} sessions.", messages.ERROR
            )
        elif action == "archive":
            archive_live_sessions(self, request, ids)
        elif action == "delete":
            delete_live_sessions(self, request, ids)
        else:
            try:
                hours = float(request.POST.get("hours", "24"))
            except ValueError:
                self.message_user(request, "hours: must be a number.", messages.ERROR)
            else:
                extend_live_sessions(self, request, ids, hours)
        return HttpResponseRedirect(request.get_full_path())


def _each(model_admin, request, ids, operation, verb: str, **details) -> int:
    """Run `operation(store, id)` for each id; report per-session errors; the number done."""
    done = 0
    store = _store()
    acted = []
    for session_id in ids:
        try:
            if operation(store, session_id):
                done += 1
                acted.append(session_id)
        except StoreError as exc:
            model_admin.message_user(request, f"{session_id}: {exc}", messages.ERROR)
        except DatabaseError as exc:
            model_admin.message_user(
                request, f"{session_id}: database unavailable ({exc})", messages.ERROR
            )
    logger.info("admin %s %s %d of %d sessions", request.user, verb, done, len(ids))
    action = {"archived": "archive", "extended": "extend", "deleted": "delete_session"}[verb]
    audit.record_sessions(action, acted, actor=request, **details)
    return done


def archive_live_sessions(model_admin, request, ids) -> None:
    done = _each(model_admin, request, ids, lambda store, i: store.archive_session(i), "archived")
    if done:
        model_admin.message_user(request, f"Archived {done} live session(s).", messages.SUCCESS)
    if len(ids) - done:
        model_admin.message_user(
            request,
            f"{len(ids) - done} session(s) were not live (already archived): nothing to do.",
            messages.INFO,
        )


def _split_live(ids) -> tuple[list[str], list[str]]:
    """(live ids, ids not in Redis), in one store call."""
    flags = _store().live_flags([str(session_id) for session_id in ids])
    live = [i for i in ids if flags[str(i)]]
    return live, [i for i in ids if not flags[str(i)]]


def extend_live_sessions(model_admin, request, ids, hours: float) -> None:
    try:
        live, gone = _split_live(ids)
    except StoreUnavailable as exc:
        model_admin.message_user(request, f"Live store unavailable: {exc}", messages.ERROR)
        return
    if gone:
        model_admin.message_user(
            request,
            f"{len(gone)} selected session(s) are archived: only live sessions can be extended.",
            messages.WARNING,
        )
    done = _each(
        model_admin,
        request,
        live,
        lambda store, i: store.extend_session(i, hours),
        "extended",
        hours=hours,
    )
    if done:
        model_admin.message_user(
            request, f"Extended {done} live session(s) by {hours:g} h.", messages.SUCCESS
        )


def delete_live_sessions(model_admin, request, ids) -> None:
    done = _each(model_admin, request, ids, lambda store, i: store.delete_session(i), "deleted")
    model_admin.message_user(request, f"Deleted {done} session(s).", messages.SUCCESS)
