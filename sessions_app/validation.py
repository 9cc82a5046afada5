"""Input checks shared by the store, the REST API and MCP: each failure names the field and why."""

import ipaddress
import json
import math
import re
import uuid
from typing import Any

from sessions_app.exceptions import (
    InvalidInput,
    InvalidPayload,
    InvalidSessionType,
    InvalidStatus,
    InvalidTTL,
)
from sessions_app.models import END_STATUSES, MessageRole, Session, SessionType

MAX_ASSETS = 50
MAX_ASSET_LENGTH = 32
MAX_TAGS = 20
MAX_TAG_LENGTH = 64
MAX_USER_ID_LENGTH = 128
MAX_PURPOSE_LENGTH = 2000
MAX_SHORT_TEXT = 64
MAX_NAME_LENGTH = 128
MAX_SUMMARY_LENGTH = 4000
MAX_CONTENT_LENGTH = 32_000
MAX_JSON_BYTES = 32_768
MAX_CONTEXT_KEY_LENGTH = 128
MAX_DURATION_MS = 86_400_000.0  # one day
MAX_COST = 1_000_000.0

# The session id rule, defined once: the store, URL converter, REST and MCP all use it.
MAX_SESSION_ID_LENGTH = Session._meta.get_field("id").max_length
SESSION_ID_CHARS = "A-Za-z0-9._:@-"
SESSION_ID_PATTERN = rf"[{SESSION_ID_CHARS}]{{1,{MAX_SESSION_ID_LENGTH}}}"
SESSION_ID_RE = re.compile(rf"^{SESSION_ID_PATTERN}\Z")

ASSET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-_/^=:]*$")
QUERY_TYPE_RE = re.compile(r"^[a-z][a-z0-9_.\-]*$")
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
    if "\x00" in value:
        raise InvalidInput(field, "must not contain NUL characters")
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


def user_id(value: Any) -> str:
    return _text("user_id", value, MAX_USER_ID_LENGTH)


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
    if value in (None, ""):
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidInput("ip", f"{str(value)[:60]!r} is not an IP address") from None


def json_payload(field: str, value: Any, *, require_dict: bool = False) -> str:
    """Compact JSON of `value`, at most MAX_JSON_BYTES; rejects NaN/Infinity and non-JSON types."""
    if require_dict and not isinstance(value, dict):
        raise InvalidPayload(field, "must be a JSON object")
    try:
        encoded = json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(field, f"is not JSON-serialisable ({exc})") from None
    if NUL_ESCAPE_RE.search(encoded):
        raise InvalidPayload(
            field, "must not contain NUL characters (PostgreSQL cannot store them)"
        )
    if len(encoded.encode()) > MAX_JSON_BYTES:
        raise InvalidPayload(field, f"is larger than {MAX_JSON_BYTES // 1024} KiB of JSON")
    return encoded


def context_key(field: str, value: Any) -> str:
    return _text(field, value, MAX_CONTEXT_KEY_LENGTH, required=True)


def non_negative(
    field: str, value: Any, *, integer: bool = False, maximum: float | None = None
) -> float | int:
    """A finite number >= 0 (whole with `integer`), at most `maximum` (2**31 - 1 for integers)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(field, "must be a number")
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(field, "must be zero or more")
    if integer and not float(value).is_integer():
        raise InvalidInput(field, "must be a whole number")
    if maximum is None:
        maximum = 2**31 - 1 if integer else 1e12
    if value > maximum:
        raise InvalidInput(field, f"must be at most {maximum:g}")
    return int(value) if integer else float(value)


def query_type(value: Any) -> str:
    value = _text("query_type", value, MAX_SHORT_TEXT, required=True).lower()
    if not QUERY_TYPE_RE.match(value):
        raise InvalidInput("query_type", "must start with a letter: letters, digits, _ . -")
    return value


def role(value: Any) -> str:
    value = getattr(value, "value", value)
    if value not in MessageRole.values:
        raise InvalidInput("role", f"must be one of {', '.join(MessageRole.values)}")
    return value


def text(field: str, value: Any, max_length: int, *, required: bool = False) -> str:
    return _text(field, value, max_length, required=required)
