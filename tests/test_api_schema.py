"""Schemathesis against /api/v1/openapi.json: generated requests (valid and invalid) never get a
5xx, and every response matches the status codes and schemas the document declares."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from sessions_app import apikeys
from sessions_app.store import get_session_store
from sessions_app.validation import SESSION_ID_RE

# A bounded run: enough to cover every operation and error path, short enough for `make test`.
MAX_EXAMPLES = 15

# Every built-in check runs, positive_data_acceptance included: a schema-valid request must not
# get a 422. The exceptions are the rules JSON Schema cannot state, answered with these codes:
# a TTL past the admin-edited policy's maximum or the session's age (`invalid_ttl`), an
# Idempotency-Key an earlier generated request used with another body, and an
# opaque cursor this API never issued (`cursor`). NUL characters are refused everywhere
# (PostgreSQL cannot store them), so generation leaves them out.
STATE_DEPENDENT_CODES = {"invalid_ttl", "idempotency_key_reused"}
OPAQUE_FIELDS = {"cursor"}
# POST /ingest answers a malformed operation per item (200), by design: one bad item must not
# sink the others, so a schema-invalid item is not a rejected request.
PER_ITEM_OPERATIONS = {"ingest"}
LIST_QUERY_PARAMETERS = {"tags"}

# Loaded at collection (the document needs no database); one test per operation.
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
schema.config.generation.update(max_examples=MAX_EXAMPLES, allow_x00=False)


@pytest.fixture
def bearer(db):
    """A read+write key; the test transaction's connection stays open between requests."""
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
    response = case.call(headers=bearer)
    excluded = []
    if response.status_code == 422:
        error = response.json()["error"]
        if error["code"] in STATE_DEPENDENT_CODES or error["field"] in OPAQUE_FIELDS:
            excluded.append(positive_data_acceptance)
    if case.operation.definition.raw.get("operationId") in PER_ITEM_OPERATIONS or any(
        not isinstance(value, list)
        for name, value in (case.query or {}).items()
        if name in LIST_QUERY_PARAMETERS
    ):
        excluded.append(negative_data_rejection)
    case.validate_response(response, headers=bearer, excluded_checks=excluded)


def _is_session_id(value) -> bool:
    return bool(SESSION_ID_RE.match(str(value)))
