"""Schemathesis against /api/v1/openapi.json: generated requests (valid and invalid) never get a
5xx, every response matches the status codes and schemas the document declares, schema-valid
requests are accepted, and every session the fuzzer wrote reaches the archive."""

import time

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from sessions_app import apikeys, archive
from sessions_app.store import get_session_store
from sessions_app.validation import SESSION_ID_RE

# A bounded run: enough to cover every operation and error path, short enough for `make test`.
MAX_EXAMPLES = 15
# Past any TTL the API grants, so the archiver takes every live session the fuzzer made.
ARCHIVE_HORIZON = 366 * 24 * 3600

# Every built-in check runs, positive_data_acceptance included, with only these rules that JSON
# Schema cannot state tolerated as a 422 on a schema-valid request: the TTL limit comes from the
# admin-edited retention policy, cursors are opaque, and arbitrary JSON payloads cannot be
# described as "no NUL, at most 32 KiB, at most MAX_JSON_DEPTH deep" (plain text fields cannot
# hold NUL either). Each is tested directly in test_api.py / test_hardening.py.
TOLERATED_422 = {
    ("invalid_ttl", "ttl_hours"),
    ("invalid_ttl", "hours"),
    ("invalid_input", "cursor"),
    # A pattern cannot state the calendar (0000-00-00) nor that created_to is not before
    # created_from (tests/test_list_filters.py tests both).
    ("invalid_input", "created_from"),
    ("invalid_input", "created_to"),
    # An Idempotency-Key an earlier generated request used with another body.
    ("idempotency_key_reused", "idempotency_key"),
}


def _tolerated(response) -> bool:
    if response.status_code != 422:
        return False
    error = response.json().get("error", {})
    code, field = error.get("code"), error.get("field")
    return (
        (code, field) in TOLERATED_422
        or code == "invalid_payload"
        or "NUL" in error.get("reason", "")
    )


@schemathesis.check
def positive_data_accepted(ctx, response, case):
    """positive_data_acceptance, except for the TOLERATED_422 rules above."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except AssertionError:
        if _tolerated(response):
            return None
        raise


# POST /ingest answers a malformed operation per item (200), by design: one bad item must not
# sink the others, so a schema-invalid item is not a rejected request.
PER_ITEM_OPERATIONS = {"ingest"}
LIST_QUERY_PARAMETERS = {"tags"}

# Loaded at collection (the document needs no database); one test per operation.
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
schema.config.generation.update(max_examples=MAX_EXAMPLES, allow_x00=False)


@pytest.fixture
def bearer(db, settings):
    """A read+write key; the test transaction's connection stays open between requests."""
    # Schemathesis re-sends every accepted request with invalid credentials (expecting 401):
    # that many bad keys from one address would be rate limited (429), which
    # tests/reliability/test_security.py covers; here the limit is out of the way.
    settings.API_KEY_RATE_LIMIT = (10**6, 300)
    # Like Django's test client: requests must not close the connection holding the test
    # transaction.
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    _, secret = apikeys.create_api_key("schemathesis", ["read", "write"])
    yield {"Authorization": f"Bearer {secret}"}
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_schema(case, bearer):
    # Random ids would only ever reach 404; point requests with a well-formed id at a real
    # live session so the write and read paths behind them are exercised too.
    params = case.path_parameters or {}
    if "session_id" in params and _is_session_id(params["session_id"]):
        session = get_session_store().create_session(session_type="agent", user_id="fuzz")
        params["session_id"] = str(session.id)
    excluded = [positive_data_acceptance]
    if case.operation.definition.raw.get("operationId") in PER_ITEM_OPERATIONS or any(
        not isinstance(value, list)
        for name, value in (case.query or {}).items()
        if name in LIST_QUERY_PARAMETERS
    ):
        excluded.append(negative_data_rejection)
    case.call_and_validate(
        headers=_auth_unless_testing_it(case, bearer),
        excluded_checks=excluded,
        additional_checks=[positive_data_accepted],
    )
    # Whatever the fuzzer got accepted must reach Postgres: archive everything now.
    counts = archive.archive_due_sessions(now=time.time() + ARCHIVE_HORIZON)
    assert counts["failed"] == 0, counts


def _auth_unless_testing_it(case, bearer) -> dict:
    """The key, unless the case deliberately breaks the headers (then it must get a 401)."""
    header = (case.meta.components if case.meta else {}).get(ParameterLocation.HEADER)
    if header is not None and not header.mode.is_positive:
        return {}
    return bearer


def _is_session_id(value) -> bool:
    return bool(SESSION_ID_RE.match(str(value)))
