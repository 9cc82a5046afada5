"""OTLP traces in: real spans exported by opentelemetry-sdk through the OTLP/HTTP exporter into a
real server (gunicorn), then read back as sessions; OTLP JSON and bad bodies in-process."""

import json
import uuid

import pytest
from django.test import Client
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from sessions_app import apikeys
from sessions_app.store import get_session_store

OTLP_PATH = "/api/v1/otel/v1/traces"


def _tracer(monkeypatch, server, key, resource=None):
    # Configured the way an instrumented app is: environment variables only.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"{server.url}/api/v1/otel")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{key}")
    provider = TracerProvider(resource=Resource.create(resource or {"service.name": "agent"}))
    exporter = OTLPSpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, provider.get_tracer("test")


def test_exported_spans_become_a_session_timeline(live_api, monkeypatch):
    server, key = live_api
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    provider, tracer = _tracer(monkeypatch, server, key)
    common = {"gen_ai.conversation.id": conversation, "user.id": "otel-user"}
    with tracer.start_as_current_span("invoke_agent", attributes=common):
        with tracer.start_as_current_span(
            "chat gpt-4o",
            attributes={
                **common,
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 480,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool get_quote",
            attributes={
                **common,
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_quote",
                "gen_ai.tool.call.id": "call-7",
            },
        ) as span:
            span.set_status(Status(StatusCode.ERROR, "quote provider timed out"))
        with tracer.start_as_current_span(
            "SELECT prices",
            attributes={
                **common,
                "db.system.name": "postgresql",
                "db.operation.name": "SELECT",
                "db.response.returned_rows": 252,
            },
        ):
            pass
    with tracer.start_as_current_span("no session here"):
        pass
    provider.force_flush()
    provider.shutdown()

    session = get_session_store().get_session(conversation, recent_events=10)
    assert session is not None
    assert session.id == conversation
    assert session.user_id == "otel-user"
    assert session.source == "otel"
    kinds = [event.kind for event in session.recent_events]
    assert kinds == ["message", "tool_call", "query"]
    message, tool, query = session.recent_events
    assert "gpt-4o" in message.content
    # The chat span's token usage is the message's and adds to the session's.
    assert (message.tokens_in, message.tokens_out) == (120, 480)
    assert (session.tokens_in, session.tokens_out) == (120, 480)
    assert (tool.tool_name, tool.invocation_id) == ("get_quote", "call-7")
    assert tool.error == "quote provider timed out"
    assert tool.duration_ms is not None and tool.duration_ms >= 0
    assert query.query_type == "select"
    assert query.result_summary == "252 rows"
    assert session.error_count == 1


def test_reexported_spans_are_recorded_once(live_api, monkeypatch):
    server, key = live_api
    session_id = f"sess-{uuid.uuid4().hex[:8]}"
    provider, tracer = _tracer(monkeypatch, server, key, {"session.id": session_id})
    with tracer.start_as_current_span("search AAPL", attributes={"query.type": "search"}):
        pass
    provider.force_flush()
    exporter = provider._active_span_processor._span_processors[0].span_exporter
    assert get_session_store().get_session(session_id).query_count == 1
    provider.shutdown()
    del exporter


@pytest.fixture
def writer(db):
    _, secret = apikeys.create_api_key("otel", ["write", "read"])
    return {"Authorization": f"Bearer {secret}"}


def _otlp_json(spans, resource_attributes=()):
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": list(resource_attributes)},
                "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}],
            }
        ]
    }


def _attr(key, value):
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def test_otlp_json_is_accepted_and_sessionless_spans_are_counted(writer, store):
    session_id = f"mcp-{uuid.uuid4().hex[:8]}"
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "execute_tool lookup",
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000250000000",
        "attributes": [_attr("mcp.session.id", session_id), _attr("enduser.id", "u-json")],
    }
    orphan = {**span, "spanId": "eee19b7ec3c1b175", "attributes": []}
    response = Client().post(
        OTLP_PATH,
        data=json.dumps(_otlp_json([span, orphan, {**orphan, "spanId": "eee19b7ec3c1b176"}])),
        content_type="application/json",
        headers=writer,
    )
    assert response.status_code == 200, response.content
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "2 spans had no session attribute" in partial["errorMessage"]
    session = store.get_session(session_id)
    assert session.user_id == "u-json"
    (event,) = session.recent_events
    assert (event.kind, event.tool_name, event.duration_ms) == ("tool_call", "lookup", 250.0)


def test_bad_otlp_bodies_are_clear_errors(writer):
    client = Client()
    response = client.post(
        OTLP_PATH, data=b"\xff\x00garbage", content_type="application/x-protobuf", headers=writer
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_otlp"
    response = client.post(OTLP_PATH, data="x", content_type="text/plain", headers=writer)
    assert response.status_code == 415
    response = client.post(OTLP_PATH, data="[1]", content_type="application/json", headers=writer)
    assert response.status_code == 400
    response = client.post(OTLP_PATH, data=b"", content_type="application/x-protobuf")
    assert response.status_code == 401
