"""Paging limits shared by the REST routes and the MCP tools (stated once, here)."""

LIST_DEFAULT = 50  # the seed's list-sessions default
LIST_MAX = 200
CURSOR_MAX = 200
LIST_LIMITS = (LIST_DEFAULT, LIST_MAX, CURSOR_MAX)

TIMELINE_DEFAULT = 50
TIMELINE_MAX = 500
TIMELINE_OFFSET_MAX = 10_000_000
TIMELINE_LIMITS = (TIMELINE_MAX, TIMELINE_OFFSET_MAX)

RECENT_EVENTS_MAX = 200


# A date or date-time in ISO 8601, as the list filters take them (REST and MCP); the calendar is
# checked on use (iso_time), which a pattern cannot state.
ISO_TIME_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)
ISO_TIME_MAX = 32


def iso_time(name: str, value: str | None):
    """An ISO 8601 argument as an aware datetime (UTC if it has no offset); None stays None."""
    from datetime import UTC, datetime

    from sessions_app.exceptions import InvalidInput

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(name, "must be a valid ISO 8601 date or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
