"""Schemathesis against /api/v1/openapi.json: generated requests (valid and invalid) never get a
5xx, and every response matches the status codes and schemas the document declares."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from sessions_app import apikeys
from sessions_app.store import get_session_store
from sessions_app.validation import SESSION_ID_RE

# A bounded run: enough to cover every operation and error path, short enough for `make test`.
MAX_EXAMPLES = 15

# Every built-in check runs except positive_data_acceptance: some rules cannot be said in JSON
# Schema (the TTL limit comes from the admin-edited retention policy, cursors are opaque, JSON
# payloads are limited to 32 KiB encoded, IP addresses must parse), so a schema-valid request
# may still get a 422; everything else (no 5xx, declared status codes and bodies, rejecting
# schema-invalid data, auth enforced) is checked.

# Loaded at collection (the document needs no database); one test per operation.
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
schema.config.generation.update(max_examples=MAX_EXAMPLES)


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
    case.call_and_validate(headers=bearer, excluded_checks=[positive_data_acceptance])


def _is_session_id(value) -> bool:
    return bool(SESSION_ID_RE.match(str(value)))
