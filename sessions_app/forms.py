"""Forms that validate the dashboard's query strings and action posts.

Each error names the field and the reason; a view shows them and runs no query with bad input.
"""

from datetime import timedelta

from django import forms
from django.utils import timezone

from sessions_app import explore, history, validation
from sessions_app.exceptions import InvalidInput
from sessions_app.models import END_STATUSES, SessionStatus, SessionType

RANGE_CHOICES = [("7", "Last 7 days"), ("30", "Last 30 days"), ("90", "Last 90 days")]
# The overview's period when none is chosen: the dropdown shows it and the data uses it.
DEFAULT_RANGE = "30"
CUSTOM = "custom"
MAX_CUSTOM_DAYS = 366
PER_PAGE_CHOICES = [(10, "10"), (25, "25"), (50, "50"), (100, "100")]
DEFAULT_PER_PAGE = 50


def _valid(check, *args):
    """Run a validation.py check; its reason becomes the form field's error."""
    try:
        return check(*args)
    except InvalidInput as error:
        raise forms.ValidationError(error.reason) from None


def _type_choices(label: str = "All types"):
    return [("", label), *SessionType.choices]


class DateInput(forms.DateInput):
    input_type = "date"


class OverviewFilterForm(forms.Form):
    """Date range (7/30/90 days or custom) and session type of the overview."""

    range = forms.ChoiceField(
        choices=[*RANGE_CHOICES, (CUSTOM, "Custom range")],
        required=False,
        initial=DEFAULT_RANGE,
        label="Period",
    )
    start = forms.DateField(required=False, widget=DateInput, label="From")
    end = forms.DateField(required=False, widget=DateInput, label="To")
    type = forms.ChoiceField(choices=_type_choices(), required=False, label="Type")
    # Overlay the previous period of equal length on the charts (KPIs always compare).
    compare = forms.BooleanField(required=False, label="Overlay previous period")

    def clean_start(self):
        return _valid(validation.day, "start", self.cleaned_data["start"])

    def clean_end(self):
        return _valid(validation.day, "end", self.cleaned_data["end"])

    def clean(self):
        super().clean()
        data = self.cleaned_data
        today = timezone.localdate()
        if data.get("range") == CUSTOM:
            start, end = data.get("start"), data.get("end")
            if not start and "start" not in self.errors:
                self.add_error("start", "Pick a start date for a custom range.")
            if not end and "end" not in self.errors:
                self.add_error("end", "Pick an end date for a custom range.")
            if start and end:
                if start > end:
                    self.add_error("start", "The start date must be on or before the end date.")
                elif (end - start).days + 1 > MAX_CUSTOM_DAYS:
                    self.add_error("start", f"A range can span at most {MAX_CUSTOM_DAYS} days.")
                if end > today:
                    self.add_error("end", "The end date cannot be in the future.")
        return data

    def period_kwargs(self) -> dict:
        """Arguments for analytics selectors: days=N, or start/end for a custom range."""
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        if data.get("range") == CUSTOM:
            return {"start": data["start"], "end": data["end"]}
        return {"days": int(data.get("range") or DEFAULT_RANGE)}

    def session_type(self) -> str | None:
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        return data.get("type") or None


class HistoryFilterForm(forms.Form):
    """Filters, sort, page size and cursor of the history browser (all from the query string)."""

    user = forms.CharField(required=False, max_length=validation.MAX_USER_ID_LENGTH, label="User")
    type = forms.ChoiceField(choices=_type_choices(), required=False, label="Type")
    status = forms.ChoiceField(
        choices=[("", "Any status"), *[(s, s.label) for s in SessionStatus if s != "active"]],
        required=False,
        label="Status",
    )
    tag = forms.CharField(required=False, max_length=validation.MAX_TAG_LENGTH, label="Tag")
    asset = forms.CharField(required=False, max_length=validation.MAX_ASSET_LENGTH, label="Asset")
    start = forms.DateField(required=False, widget=DateInput, label="From")
    end = forms.DateField(required=False, widget=DateInput, label="To")
    q = forms.CharField(required=False, max_length=200, label="Purpose contains")
    has_errors = forms.ChoiceField(
        choices=[("", "Any"), ("yes", "With errors"), ("no", "Without errors")],
        required=False,
        label="Errors",
    )
    min_queries = forms.IntegerField(
        required=False, min_value=0, max_value=1_000_000, label="Min queries"
    )
    sort = forms.ChoiceField(
        choices=[(f"{p}{name}", f"{p}{name}") for name in history.SORT_COLUMNS for p in ("", "-")],
        required=False,
    )
    per_page = forms.TypedChoiceField(
        choices=PER_PAGE_CHOICES,
        coerce=int,
        required=False,
        # django-stubs types empty_value as str | None; Django takes any value (here an int).
        empty_value=DEFAULT_PER_PAGE,  # type: ignore[arg-type]
    )
    cursor = forms.CharField(required=False, max_length=400)

    def clean_user(self):
        return _valid(validation.user_id, self.cleaned_data["user"])

    def clean_start(self):
        return _valid(validation.day, "start", self.cleaned_data["start"])

    def clean_end(self):
        return _valid(validation.day, "end", self.cleaned_data["end"])

    def clean_tag(self):
        return self.cleaned_data["tag"].strip()

    def clean_asset(self):
        return self.cleaned_data["asset"].strip().upper()

    def clean_q(self):
        text = self.cleaned_data["q"].strip()
        if text and not history.text_query(text):
            raise forms.ValidationError("Type at least one letter or digit to search for.")
        return text

    def clean(self):
        super().clean()
        data = self.cleaned_data
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            self.add_error("start", "The start date must be on or before the end date.")
        cursor = data.get("cursor")
        if cursor and "sort" not in self.errors:
            try:
                history.decode_cursor(cursor, data.get("sort") or history.DEFAULT_SORT)
            except InvalidInput as error:
                self.add_error("cursor", f"This page link is out of date: {error.reason}.")
        return data

    def filters(self) -> history.HistoryFilters:
        data = self.cleaned_data
        return history.HistoryFilters(
            user=data.get("user") or "",
            session_type=data.get("type") or "",
            status=data.get("status") or "",
            tag=data.get("tag") or "",
            asset=data.get("asset") or "",
            start=data.get("start"),
            end=data.get("end"),
            text=data.get("q") or "",
            has_errors={"yes": True, "no": False}.get(data.get("has_errors") or ""),
            min_queries=data.get("min_queries"),
        )

    @property
    def sort_value(self) -> str:
        return (self.cleaned_data.get("sort") if self.is_valid() else "") or history.DEFAULT_SORT


class ExtendForm(forms.Form):
    """Hours to add to a live session; at most what its type's max TTL still allows."""

    hours = forms.FloatField(
        min_value=0.1, max_value=validation.MAX_TTL_HOURS, initial=24, label="Hours"
    )

    def __init__(self, *args, limit: "ExtendLimit | None" = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit = limit

    def clean_hours(self):
        hours = self.cleaned_data["hours"]
        if self.limit is not None and hours > self.limit.allowed_hours:
            raise forms.ValidationError(self.limit.text)
        return hours


class ExtendLimit:
    """How much longer a live session may live: its type's max TTL counts from its start."""

    def __init__(self, session, max_ttl_hours: int):
        self.max_ttl_hours = max_ttl_hours
        latest = session.created_at + timedelta(hours=max_ttl_hours)
        # Floor to a tenth of an hour, the form's step, so the offered maximum is accepted.
        seconds = max((latest - session.expires_at).total_seconds(), 0)
        self.allowed_hours = int(seconds / 360) / 10
        self.suggested = f"{min(24, self.allowed_hours):g}"
        self.text = (
            f"At most {self.allowed_hours:g} more hours: "
            f"{session.session_type} sessions live at most {max_ttl_hours} h (max TTL)."
        )


class EndForm(forms.Form):
    status = forms.ChoiceField(choices=[(s.value, s.label) for s in END_STATUSES])


class UserLookupForm(forms.Form):
    user = forms.CharField(max_length=validation.MAX_USER_ID_LENGTH, label="User id")

    def clean_user(self):
        value = _valid(validation.user_id, self.cleaned_data["user"])
        if not value:
            raise forms.ValidationError("Enter a user id.")
        return value


def error_list(form: forms.Form) -> list[str]:
    """Every error as "Field: reason", for a message above the results."""
    messages: list[str] = []
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        label = (field.label or name.replace("_", " ").capitalize()) if field else ""
        messages.extend(f"{label}: {error}" if label else str(error) for error in errors)
    return messages


# ---- analyst pages: users list --------------------------------------------------------------


class UsersListForm(forms.Form):
    """Search, sort, period and page of the users list (all from the query string)."""

    q = forms.CharField(required=False, max_length=128, label="Search users")
    sort = forms.ChoiceField(
        choices=[(f"{p}{name}", f"{p}{name}") for name in explore.USER_SORTS for p in ("", "-")],
        required=False,
    )
    days = forms.TypedChoiceField(
        choices=[(d, f"Last {d} days") for d in explore.USER_PERIODS],
        coerce=int,
        required=False,
        empty_value=30,  # type: ignore[arg-type]  # django-stubs: str | None; Django: any
        label="Period",
    )
    page = forms.IntegerField(required=False, min_value=1, max_value=100_000)

    def clean_q(self):
        return self.cleaned_data["q"].strip()
