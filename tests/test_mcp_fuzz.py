"""Fuzz the MCP tools from their own input schemas (what tools/list publishes): no call ends in
an internal error, schema-valid arguments are accepted, and every session the tools wrote
reaches the archive."""

import time

import pytest
from asgiref.sync import async_to_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation.jsonschema.builder import build

from sessions_app import archive
from sessions_app.mcp import tools

MAX_EXAMPLES = 25
JSON_SCHEMA_DRAFT = 20  # 2020-12, what pydantic's model_json_schema writes
ARCHIVE_HORIZON = 366 * 24 * 3600

# Rules a JSON Schema cannot state (see tests/test_api_schema.py): the TTL limit comes from the
# retention policy, cursors are opaque, arbitrary JSON cannot be described as "no NUL, at most
# 32 KiB, at most MAX_JSON_DEPTH deep", and text cannot hold NUL.
# A pattern cannot state the calendar either (2026-13-45) nor that createdTo is not before
# createdFrom.
TOLERATED = {
    ("invalid_ttl", "ttlHours"),
    ("invalid_ttl", "hours"),
    ("invalid_input", "cursor"),
    ("invalid_input", "createdFrom"),
    ("invalid_input", "createdTo"),
}


def _tolerated(error: dict) -> bool:
    return (
        (error["code"], error["field"]) in TOLERATED
        or error["code"] == "invalid_payload"
        or "NUL" in error["reason"]
    )


# Tools whose sessionId names the session to create (a caller-chosen id), not an existing one.
CREATING = {"create-analysis-session"}


def _arguments(name: str):
    schema = tools.TOOLS[name].args.model_json_schema(by_alias=True)
    return build(schema, draft=JSON_SCHEMA_DRAFT, formats={})


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", sorted(tools.TOOLS))
def test_mcp_tools_accept_what_their_schemas_allow_and_it_archives(name, store):
    created: set[str] = set()  # ids this run's creates took (hypothesis replays examples)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(arguments=_arguments(name), unknown_id=st.integers(0, 9))
    def run(arguments, unknown_id):
        # A well-formed random id would only ever reach "not found": mostly use a real session.
        if "sessionId" in arguments and unknown_id and name not in CREATING:
            session = store.create_session(session_type="agent", user_id="mcp-fuzz")
            arguments["sessionId"] = str(session.id)
        result = async_to_sync(tools.call_tool)(name, arguments)
        if result.is_error:
            error = result.structured_content["error"]
            assert error["code"] != "internal_error", (arguments, error)
            # A replayed example creates an id it already created: that conflict is expected.
            replayed = arguments.get("sessionId") in created
            if error["code"] == "session_already_exists" and replayed:
                return
            if error["code"] != "session_not_found":
                assert _tolerated(error), (arguments, error)
        elif name in CREATING and arguments.get("sessionId"):
            created.add(str(arguments["sessionId"]))
        counts = archive.archive_due_sessions(now=time.time() + ARCHIVE_HORIZON)
        assert counts["failed"] == 0, (arguments, counts)

    run()
