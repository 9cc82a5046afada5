"""Input checks shared by the store, the REST API and MCP: each failure names the field and why."""

import ipaddress
import json
import math
import re
import uuid
from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal, overload

from django.db import connection, models

from sessions_app.exceptions import (
    InvalidInput,
    InvalidPayload,
    InvalidSessionType,
    InvalidStatus,
    InvalidTTL,
)
from sessions_app.models import END_STATUSES, MessageRole, Session, SessionEvent, SessionType

# ---- Limits: one source of truth -------------------------------------------------------------
# Every accepted value must fit the column the archiver writes it to, so the limits of stored
# values are read from the model fields (length, numeric precision, integer range) at import;
# the REST schemas and the MCP tool schemas import them from here. Limits of values with no
# column limit (text, JSON, durations) are product choices and are defined here, once.


def _field(model: type[models.Model], name: str) -> Any:
    return model._meta.get_field(name)


def _max_length(model: type[models.Model], name: str) -> int:
    """max_length of a CharField, or of an ArrayField's items."""
    field = _field(model, name)
    field = getattr(field, "base_field", field)
    return int(field.max_length)


def _decimal_max(model: type[models.Model], name: str) -> Decimal:
    """The largest value a DecimalField column holds: numeric(14,6) -> 99999999.999999."""
    field = _field(model, name)
    return Decimal(10) ** (field.max_digits - field.decimal_places) - Decimal(1).scaleb(
        -field.decimal_places
    )


def _decimal_places(model: type[models.Model], name: str) -> int:
    return int(_field(model, name).decimal_places)


def _integer_max(model: type[models.Model], name: str) -> int:
    """The largest value an integer column holds (integer, bigint, positive variants)."""
    _, high = connection.ops.integer_field_range(_field(model, name).get_internal_type())
    return int(high)


MAX_ASSETS = 50
MAX_ASSET_LENGTH = _max_length(Session, "assets")
MAX_TAGS = 20
MAX_TAG_LENGTH = _max_length(Session, "tags")
MAX_USER_ID_LENGTH = _max_length(Session, "user_id")
MAX_SOURCE_LENGTH = _max_length(Session, "source")
MAX_DEVICE_LENGTH = _max_length(Session, "device")
MAX_QUERY_TYPE_LENGTH = _max_length(SessionEvent, "query_type")
MAX_TOOL_NAME_LENGTH = _max_length(SessionEvent, "tool_name")
MAX_INVOCATION_ID_LENGTH = _max_length(SessionEvent, "invocation_id")
# Kept for callers that check several short columns with one limit: the smallest of them.
MAX_SHORT_TEXT = min(MAX_SOURCE_LENGTH, MAX_DEVICE_LENGTH, MAX_QUERY_TYPE_LENGTH)
MAX_NAME_LENGTH = min(MAX_TOOL_NAME_LENGTH, MAX_INVOCATION_ID_LENGTH)
# Text columns without a length limit: product limits.
MAX_PURPOSE_LENGTH = 2000
MAX_SUMMARY_LENGTH = 4000
MAX_CONTENT_LENGTH = 32_000
MAX_JSON_BYTES = 32_768
# Deeper JSON breaks recursive readers (Python's json, the admin's pretty-printer, pydantic).
MAX_JSON_DEPTH = 32
MAX_CONTEXT_KEY_LENGTH = 128
MAX_DURATION_MS = 86_400_000.0  # one day
# Hours a TTL or an extension may ask for at most; the type's policy max TTL (usually 168) is
# checked by the store on top.
MAX_TTL_HOURS = 24 * 365

# The session id rule, defined once: the store, URL converter, REST and MCP all use it.
MAX_SESSION_ID_LENGTH = Session._meta.get_field("id").max_length
SESSION_ID_CHARS = "A-Za-z0-9._:@-"
SESSION_ID_PATTERN = rf"[{SESSION_ID_CHARS}]{{1,{MAX_SESSION_ID_LENGTH}}}"
SESSION_ID_RE = re.compile(rf"^{SESSION_ID_PATTERN}\Z")

# Per-session sums must fit the session's columns too. A session holds at most
# MAX_EVENTS_PER_SESSION events (the store's per-session event cap must not exceed it), so each
# event's share is the session column's maximum divided by that many events, and never more
# than the event's own column holds.
MAX_EVENTS_PER_SESSION = 10_000
COST_DECIMAL_PLACES = _decimal_places(SessionEvent, "cost")
MAX_COST = float(
    min(
        _decimal_max(SessionEvent, "cost"),
        (_decimal_max(Session, "cost") / MAX_EVENTS_PER_SESSION).quantize(
            Decimal(1).scaleb(-COST_DECIMAL_PLACES), rounding=ROUND_DOWN
        ),
    )
)
MAX_TOKENS = min(
    _integer_max(SessionEvent, "tokens_in"),
    _integer_max(SessionEvent, "tokens_out"),
    _integer_max(Session, "tokens_in") // MAX_EVENTS_PER_SESSION,
    _integer_max(Session, "tokens_out") // MAX_EVENTS_PER_SESSION,
)
MAX_IP_LENGTH = int(_field(Session, "ip").max_length)

ASSET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.\-_/^=:]*$"
QUERY_TYPE_PATTERN = r"^[a-z][a-z0-9_.\-]*$"
# What a client may send as a query type: the pattern above, any case, surrounding blanks trimmed.
QUERY_TYPE_INPUT_PATTERN = r"^\s*[A-Za-z][A-Za-z0-9_.\-]*\s*$"
# No NUL anywhere text goes to PostgreSQL (text columns and JSONB refuse it).
NO_NUL_PATTERN = r"^[^\x00]*$"
# Required text: the store trims it, so it needs one non-blank character (a search pattern).
NOT_BLANK_PATTERN = r"\S"

# The user id rule as a schema pattern (with MAX_USER_ID_LENGTH), for REST and MCP schemas.
USER_ID_PATTERN = NO_NUL_PATTERN

LIMITS: dict[str, int | float] = {
    "assets": MAX_ASSETS,
    "asset_length": MAX_ASSET_LENGTH,
    "tags": MAX_TAGS,
    "tag_length": MAX_TAG_LENGTH,
    "user_id_length": MAX_USER_ID_LENGTH,
    "source_length": MAX_SOURCE_LENGTH,
    "device_length": MAX_DEVICE_LENGTH,
    "query_type_length": MAX_QUERY_TYPE_LENGTH,
    "tool_name_length": MAX_TOOL_NAME_LENGTH,
    "invocation_id_length": MAX_INVOCATION_ID_LENGTH,
    "purpose_length": MAX_PURPOSE_LENGTH,
    "summary_length": MAX_SUMMARY_LENGTH,
    "content_length": MAX_CONTENT_LENGTH,
    "json_bytes": MAX_JSON_BYTES,
    "json_depth": MAX_JSON_DEPTH,
    "context_key_length": MAX_CONTEXT_KEY_LENGTH,
    "duration_ms": MAX_DURATION_MS,
    "ttl_hours": MAX_TTL_HOURS,
    "events_per_session": MAX_EVENTS_PER_SESSION,
    "cost": MAX_COST,
    "tokens": MAX_TOKENS,
}
"""Every input limit by name, for the REST and MCP schemas and the docs."""

ASSET_RE = re.compile(ASSET_PATTERN)
QUERY_TYPE_RE = re.compile(QUERY_TYPE_PATTERN)
# A JSON \u0000 escape not itself escaped (a literal backslash before "u0000" is fine).
NUL_ESCAPE_RE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _text(field: str, value: Any, max_length: int, *, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    value = value.strip()
    if required and not value:
        raise InvalidInput(field, "is required")
    if len(value) > max_length:
        raise InvalidInput(field, f"must be at most {max_length} characters")
    problem = storable_text(value)
    if problem:
        raise InvalidInput(field, problem)
    return value


def session_id(value: Any, field: str = "session_id") -> str:
    """A session id: 1-128 characters of letters, digits and . _ : @ - (UUIDs included)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if not SESSION_ID_RE.match(value) or value in (".", ".."):
        raise InvalidInput(
            field,
            f"{value[:60]!r} is not a session id (1-{MAX_SESSION_ID_LENGTH} letters, digits "
            "and . _ : @ -)",
        )
    return value


# ---- Text PostgreSQL can store ----------------------------------------------------------------


def storable_text(value: str) -> str | None:
    """Why PostgreSQL cannot store `value` (NUL, unpaired UTF-16 surrogates), or None."""
    if "\x00" in value:
        return "must not contain NUL characters (PostgreSQL cannot store them)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain unpaired UTF-16 surrogates (not valid Unicode text)"
    return None


def unstorable_json(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> tuple[str, str] | None:
    """(path, reason) of the first part of decoded JSON that cannot be stored, or None.

    Checks every key and string (NUL, lone surrogates) and the nesting depth, without recursion
    so that hostile depth cannot exhaust the stack. The path is dotted: "metadata.a.0".
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                return _clip(path), f"is nested more than {max_depth} levels deep"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                child_path = f"{path}.{key}" if path else str(key)
                if isinstance(key, str):
                    problem = storable_text(key)
                    if problem:
                        return _clip(path), f"has a key that {problem}"
                stack.append((child, child_path, depth + 1))
        elif isinstance(item, str):
            problem = storable_text(item)
            if problem:
                return _clip(path), problem
    return None


def _clip(path: str, limit: int = 80) -> str:
    # Error messages echo the path; keep a hostile 900-level path short.
    return path if len(path) <= limit else path[: limit - 1] + "…"


def session_type(value: Any) -> str:
    if isinstance(value, SessionType):
        return value.value
    if value not in SessionType.values:
        raise InvalidSessionType(
            "session_type", f"must be one of {', '.join(SessionType.values)}, not {value!r}"
        )
    return value


def end_status(value: Any) -> str:
    value = getattr(value, "value", value)
    if value not in END_STATUSES:
        allowed = ", ".join(str(s) for s in END_STATUSES)
        raise InvalidStatus("status", f"must be one of {allowed}, not {value!r}")
    return value


# ---- Identifiers taken from paths and query strings --------------------------------------------


def user_id(value: Any) -> str:
    """The user id rule, everywhere one comes in (bodies, paths, query strings): a string of at
    most MAX_USER_ID_LENGTH characters, trimmed, storable (no NUL, no lone surrogates)."""
    return _text("user_id", value, MAX_USER_ID_LENGTH)


def page_number(value: Any, *, maximum: int = MAX_EVENTS_PER_SESSION) -> int:
    """A 1-based page number from a query string: garbage -> 1, huge -> `maximum`.

    Pages past the last one are empty; clamping keeps offsets inside integer range.
    """
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return 1
    return min(max(number, 1), maximum)


def assets(value: Any) -> list[str]:
    """Asset symbols, upper-cased, duplicates removed, order kept."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise InvalidInput("assets", "must be a list of symbols")
    if len(value) > MAX_ASSETS:
        raise InvalidInput("assets", f"must hold at most {MAX_ASSETS} symbols")
    result: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise InvalidInput("assets", "each symbol must be a non-empty string")
        symbol = item.strip().upper()
        if len(symbol) > MAX_ASSET_LENGTH or not ASSET_RE.match(symbol):
            raise InvalidInput(
                "assets", f"{item[:40]!r} is not a symbol (letters, digits, . - _ / ^ = :)"
            )
        if symbol not in result:
            result.append(symbol)
    return result


def tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise InvalidInput("tags", "must be a list of strings")
    if len(value) > MAX_TAGS:
        raise InvalidInput("tags", f"must hold at most {MAX_TAGS} tags")
    result: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise InvalidInput("tags", "each tag must be a non-empty string")
        tag = item.strip()
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidInput("tags", f"each tag must be at most {MAX_TAG_LENGTH} characters")
        problem = storable_text(tag)
        if problem:
            raise InvalidInput("tags", f"each tag {problem}")
        if tag not in result:
            result.append(tag)
    return result


def positive_hours(field: str, value: Any) -> float:
    """A finite, positive number of hours."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTTL(field, "must be a number of hours")
    if not math.isfinite(value) or value <= 0:
        raise InvalidTTL(field, "must be a positive number of hours")
    return float(value)


def ip_address(value: Any) -> str | None:
    """A normalised IPv4/IPv6 address, or None.

    IPv6 zone ids ("fe80::1%eth0") are refused, not stripped: PostgreSQL's inet cannot store
    them, and dropping the zone silently would store a different address than the one sent.
    """
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidInput("ip", "must be a string")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidInput("ip", f"{value[:60]!r} is not an IP address") from None
    if getattr(address, "scope_id", None):
        raise InvalidInput("ip", "must not carry an IPv6 zone id (the part after %)")
    text = str(address)
    if len(text) > MAX_IP_LENGTH:  # cannot happen for a normalised address; guards the column
        raise InvalidInput("ip", f"must be at most {MAX_IP_LENGTH} characters")
    return text


# One encoder for every payload (json.dumps with options builds a new one per call).
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def json_payload(field: str, value: Any, *, require_dict: bool = False) -> str:
    """Compact JSON of `value`, at most MAX_JSON_BYTES and MAX_JSON_DEPTH levels; rejects
    NaN/Infinity, non-JSON types, NUL and lone surrogates (the reason names the path inside)."""
    if require_dict and not isinstance(value, dict):
        raise InvalidPayload(field, "must be a JSON object")
    problem = unstorable_json(value)
    if problem:
        path, reason = problem
        raise InvalidPayload(field, f"{path} {reason}" if path else reason)
    try:
        encoded = _JSON.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidPayload(field, f"is not JSON-serialisable ({exc})") from None
    if NUL_ESCAPE_RE.search(encoded):
        raise InvalidPayload(
            field, "must not contain NUL characters (PostgreSQL cannot store them)"
        )
    if len(encoded.encode()) > MAX_JSON_BYTES:
        raise InvalidPayload(field, f"is larger than {MAX_JSON_BYTES // 1024} KiB of JSON")
    return encoded


# ---- JSON payloads ------------------------------------------------------------------------------


def context_key(field: str, value: Any) -> str:
    return _text(field, value, MAX_CONTEXT_KEY_LENGTH, required=True)


@overload
def non_negative(
    field: str, value: Any, *, integer: Literal[True], maximum: float | None = None
) -> int: ...
@overload
def non_negative(
    field: str, value: Any, *, integer: Literal[False] = False, maximum: float | None = None
) -> float: ...


def non_negative(
    field: str, value: Any, *, integer: bool = False, maximum: float | None = None
) -> float | int:
    """A finite number >= 0 (whole with `integer`), at most `maximum` (default: MAX_TOKENS for
    whole numbers, 1e12 otherwise)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field, "must be a number")
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(field, "must be zero or more")
    if integer and not float(value).is_integer():
        raise InvalidInput(field, "must be a whole number")
    if maximum is None:
        maximum = MAX_TOKENS if integer else 1e12
    if value > maximum:
        raise InvalidInput(field, f"must be at most {maximum:g}")
    return int(value) if integer else float(value)


def query_type(value: Any) -> str:
    value = _text("query_type", value, MAX_SHORT_TEXT, required=True).lower()
    if not QUERY_TYPE_RE.match(value):
        raise InvalidInput("query_type", "must start with a letter: letters, digits, _ . -")
    return value


_ROLES = frozenset(MessageRole.values)  # Django rebuilds `.values` on every read


def role(value: Any) -> str:
    value = getattr(value, "value", value)
    if value not in _ROLES:
        raise InvalidInput("role", f"must be one of {', '.join(MessageRole.values)}")
    return value


def text(field: str, value: Any, max_length: int, *, required: bool = False) -> str:
    return _text(field, value, max_length, required=required)


# ---- Days from query strings ---------------------------------------------------------------------

# The days a filter may name: wide enough for any real data, narrow enough that a day's bounds
# (its midnight and the next, in any time zone) stay inside Python's datetime range.
MIN_DAY = date(1900, 1, 1)
MAX_DAY = date(9998, 12, 31)


def day(field: str, value: Any) -> date | None:
    """A filter day between MIN_DAY and MAX_DAY, or None."""
    if value is None:
        return None
    if not isinstance(value, date):
        raise InvalidInput(field, "must be a date (YYYY-MM-DD)")
    if not MIN_DAY <= value <= MAX_DAY:
        raise InvalidInput(
            field, f"must be between {MIN_DAY.isoformat()} and {MAX_DAY.isoformat()}"
        )
    return value
