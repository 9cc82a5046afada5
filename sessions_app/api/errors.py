"""One error shape for every failure: {"error": {"code", "field", "reason"}}.

Every failure a client can cause maps to a 4xx, an outage to a 503; a 500 would be our bug.

Also the strict JSON parser: NaN/Infinity, NUL characters and lone surrogates are refused at the
door because Redis, Postgres JSONB or our counters cannot store them.
"""

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404, HttpResponse, JsonResponse
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from sessions_app import validation as v
from sessions_app.exceptions import (
    EventLimitExceeded,
    InvalidInput,
    QueryLimitExceeded,
    SessionAlreadyExists,
    SessionLimitExceeded,
    SessionNotActive,
    SessionNotFound,
    StateTooLarge,
    StoreUnavailable,
)
from sessions_app.ratelimit import RateLimited

logger = logging.getLogger(__name__)

# Where ninja puts a parameter's source; dropped from the field name we report.
_SOURCES = {"body", "query", "path", "header", "cookie", "form", "file"}
# A surrogate as a JSON escape, or as raw (CESU-8) bytes, which json.loads also lets through.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


class ScopeDenied(Exception):
    """The key is valid but lacks the scope the operation needs (403)."""

    def __init__(self, scope: str):
        self.scope = scope
        super().__init__(f"this API key lacks the '{scope}' scope")


class UnstorableText(ValueError):
    def __init__(self, reason: str, field: str = "body"):
        self.reason = reason
        self.field = field
        super().__init__(reason)


def error_body(code: str, reason: str, field: str | None = None) -> dict:
    return {"error": {"code": code, "field": field, "reason": reason}}


def error_response(status: int, code: str, reason: str, field: str | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, reason, field), status=status)


def unstorable_field(value) -> tuple[str, str] | None:
    """(field, reason) if decoded JSON holds text that cannot be stored (NUL, lone surrogates)
    or nests deeper than any payload may; the rule is validation.unstorable_json."""
    # One level more than a payload may nest: the body object holding the payload fields.
    problem = v.unstorable_json(value, max_depth=v.MAX_JSON_DEPTH + 1)
    if problem is None:
        return None
    path, reason = problem
    field, _, inner = path.partition(".")
    return (field or "body"), (f"{inner} {reason}" if inner else reason)


def _reject_constant(name: str):
    raise UnstorableText(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise UnstorableText(f"number {text[:30]} is out of range")
    return number


class StrictJSONParser(Parser):
    """JSON bodies without NaN/Infinity, NUL characters or lone surrogates."""

    def parse_body(self, request):
        body = request.body
        data = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
        # The full walk only runs when the raw body hints at a problem, so it costs nothing
        # for ordinary requests.
        if (
            b"\\u0000" in body
            or _SURROGATE_ESCAPE.search(body)
            or body.count(b"{") + body.count(b"[") > v.MAX_JSON_DEPTH
        ):
            problem = unstorable_field(data)
            if problem:
                raise UnstorableText(problem[1], problem[0])
        return data


def _field_from_loc(loc) -> str | None:
    parts = [str(part) for part in loc]
    if parts and parts[0] in _SOURCES:
        parts = parts[1:]
    # ninja nests a body schema under its parameter name ("payload"): drop that too.
    if len(parts) > 1 and parts[0] == "payload":
        parts = parts[1:]
    return ".".join(parts) or None


def pydantic_error(first: Mapping[str, Any], field: str | None) -> tuple[int, str, str]:
    """(status, code, reason) of one pydantic error: unknown fields are 400, the rest 422."""
    kind = first.get("type")
    if kind == "extra_forbidden":
        return 400, "unknown_field", "is not a field of this request"
    if kind == "missing":
        return 422, "invalid_input", "is required"
    return 422, "invalid_input", first.get("msg", "is invalid")


def first_error(errors: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The error to report: an unknown field first (400), else the first one."""
    unknown = [error for error in errors if error.get("type") == "extra_forbidden"]
    return (unknown or errors or [{}])[0]


def _validation_error(request, exc: ValidationError):
    first = first_error(exc.errors)
    field = _field_from_loc(first.get("loc", ()))
    status, code, reason = pydantic_error(first, field)
    return error_response(status, code, reason, field)


def unknown_query_parameters(
    request, allowed: frozenset[str], lists: frozenset[str] = frozenset()
) -> JsonResponse | None:
    """400 naming the first query parameter the operation does not know, or a single-valued
    one given more than once (which would otherwise silently keep the last); else None."""
    repeated = sorted(
        name for name in request.GET if name not in lists and len(request.GET.getlist(name)) > 1
    )
    if repeated:
        return error_response(400, "repeated_parameter", "may be given only once", repeated[0])
    unknown = sorted(name for name in request.GET if name not in allowed)
    if not unknown:
        return None
    known = ", ".join(sorted(allowed)) or "none"
    return error_response(
        400,
        "unknown_parameter",
        f"is not a query parameter of this route (known: {known})",
        unknown[0],
    )


def describe(exc: Exception) -> tuple[int, str, str, str | None] | None:
    """(status, code, reason, field) of a store error a single item can fail with, else None."""
    if isinstance(exc, InvalidInput):
        return 422, exc.code, exc.reason, exc.field
    if isinstance(exc, SessionNotFound):
        return 404, exc.code, str(exc), "session_id"
    if isinstance(
        exc, (SessionNotActive, QueryLimitExceeded, SessionAlreadyExists, EventLimitExceeded)
    ):
        return 409, exc.code, str(exc), "session_id"
    if isinstance(exc, StateTooLarge):
        return 413, exc.code, str(exc), "value"
    if isinstance(exc, SessionLimitExceeded):
        return 429, exc.code, str(exc), None
    return None


def _http_error(request, exc: HttpError):
    if exc.status_code == 400:
        cause = exc.__cause__
        if isinstance(cause, UnstorableText):
            return error_response(422, "invalid_payload", cause.reason, cause.field)
        if isinstance(cause, json.JSONDecodeError):
            return error_response(400, "malformed_json", f"request body is not JSON: {cause}")
        if isinstance(cause, RecursionError):
            return error_response(400, "malformed_json", "request body is nested too deeply")
        return error_response(400, "malformed_json", "request body is not valid JSON")
    return error_response(exc.status_code, "http_error", str(exc))


def _authentication_error(request, exc: AuthenticationError):
    response = error_response(
        401,
        "unauthorized",
        "send a valid API key as 'Authorization: Bearer <key>'",
        "Authorization",
    )
    response["WWW-Authenticate"] = 'Bearer realm="fiml-sessions"'
    return response


def _scope_denied(request, exc: ScopeDenied):
    return error_response(403, "forbidden", str(exc), "Authorization")


def _not_found(request, exc: SessionNotFound):
    return error_response(404, exc.code, str(exc), "session_id")


def _http404(request, exc: Http404):
    return error_response(404, "not_found", "not found")


def _not_active(request, exc: SessionNotActive):
    return error_response(409, exc.code, str(exc), "session_id")


def _query_limit(request, exc: QueryLimitExceeded):
    return error_response(409, exc.code, str(exc), "session_id")


def _unsupported(request, exc):
    # The interface offers something the store this server runs cannot do (yet).
    return error_response(422, "unsupported", str(exc), exc.argument)


def _status(status: int, field: str | None):
    """A handler answering `status` with the store error's own code and message."""

    def handler(request, exc):
        return error_response(status, exc.code, str(exc), field)

    return handler


def _invalid_input(request, exc: InvalidInput):
    return error_response(422, exc.code, exc.reason, exc.field)


def _store_unavailable(request, exc: StoreUnavailable):
    response = error_response(
        503, exc.code, "live session store is unavailable; nothing was written, retry later"
    )
    response["Retry-After"] = "5"
    return response


def _database_error(request, exc: DatabaseError):
    logger.warning("database error on %s: %s", request.path, type(exc).__name__)
    response = error_response(
        503, "database_unavailable", "the database is unavailable; retry later"
    )
    response["Retry-After"] = "5"
    return response


def _rate_limited(request, exc: RateLimited):
    response = error_response(429, "rate_limited", exc.reason, "Authorization")
    response["Retry-After"] = str(exc.retry_after)
    return response


def _too_big(request, exc: RequestDataTooBig):
    return error_response(413, "payload_too_large", "request body is too large", "body")


def _unexpected(request, exc: Exception) -> HttpResponse:
    # A bug: log it with the traceback; the client still gets the one error shape.
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "unexpected server error")


def install(api) -> None:
    """Register the handlers on a NinjaAPI (it picks the nearest class in the exception's MRO)."""
    handlers = {
        ValidationError: _validation_error,
        AuthenticationError: _authentication_error,
        HttpError: _http_error,
        ScopeDenied: _scope_denied,
        Http404: _http404,
        SessionNotFound: _not_found,
        SessionNotActive: _not_active,
        QueryLimitExceeded: _query_limit,
        SessionAlreadyExists: _status(409, "session_id"),
        EventLimitExceeded: _status(409, "session_id"),
        StateTooLarge: _status(413, "value"),
        SessionLimitExceeded: _status(429, None),
        InvalidInput: _invalid_input,
        StoreUnavailable: _store_unavailable,
        DatabaseError: _database_error,
        RequestDataTooBig: _too_big,
        RateLimited: _rate_limited,
        Exception: _unexpected,
    }
    from sessions_app.api.ingest import Unsupported

    handlers[Unsupported] = _unsupported
    for exc_class, handler in handlers.items():
        api.add_exception_handler(exc_class, handler)
