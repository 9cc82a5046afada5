"""OTLP/HTTP traces in (`POST /api/v1/otel/v1/traces`): spans become session timelines.

Decoded with `opentelemetry-proto` (protobuf, or OTLP's JSON encoding), mapped to the batch
operations of `sessions_app.api.ingest` and applied through the same code, so a span obeys the
same limits as a REST write. The mapping is the table in docs/INTERFACES.md:

- the session is the first of `session.id`, `gen_ai.conversation.id`, `mcp.session.id` found on
  the span, then on its resource; that value is the session's (caller-chosen) id;
- the user is `user.id` / `enduser.id`;
- `execute_tool` spans are tool calls, chat/completion spans messages with token usage, spans
  naming a data query queries; span status ERROR is the event's error;
- spans without a session attribute are counted, dropped and reported as rejected.

Each span's event id is derived from its trace and span ids, so a re-exported batch is applied
once.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from sessions_app import validation as v
from sessions_app.api.ingest import MAX_OPERATIONS
from sessions_app.models import SessionType

SESSION_KEYS = ("session.id", "gen_ai.conversation.id", "mcp.session.id")
USER_KEYS = ("user.id", "enduser.id")
SESSION_TYPE_KEY = "fiml.session.type"
DEFAULT_SESSION_TYPE = SessionType.AGENT.value
TOOL_OPERATIONS = {"execute_tool"}
CHAT_OPERATIONS = {"chat", "text_completion", "generate_content", "completion"}
QUERY_MARKERS = ("db.system", "db.system.name", "db.operation.name", "db.query.text")
QUERY_TYPE_KEYS = ("fiml.query.type", "query.type", "db.operation.name", "db.system.name")
QUERY_NAMES = ("query", "search")
CONTENT_KEYS = ("gen_ai.output.messages", "gen_ai.completion", "gen_ai.response.text")
# A create answered with these leaves the session as it was; its spans still apply.
EXISTING = {"session_already_exists", "idempotency_key_reused"}
MAX_PARAMETERS = 20  # span attributes copied into a query's parameters
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_NOT_QUERY_TYPE = re.compile(r"[^a-z0-9_.\-]+")


class OtlpError(Exception):
    """The request cannot be decoded (400) or has an unsupported content type (415)."""

    def __init__(self, status: int, reason: str):
        self.status = status
        self.reason = reason
        super().__init__(reason)


@dataclass
class TraceResult:
    spans: int = 0
    without_session: int = 0
    ignored: int = 0
    failed: int = 0
    sessions: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


# ---- decoding -------------------------------------------------------------------------------


def decode(body: bytes, content_type: str, encoding: str = "") -> ExportTraceServiceRequest:
    """An ExportTraceServiceRequest from an OTLP/HTTP body (protobuf or JSON, maybe gzip)."""
    encoding = (encoding or "").strip().lower()
    if encoding == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error) as exc:
            raise OtlpError(400, f"body is not valid gzip: {exc}") from None
    elif encoding not in ("", "identity"):
        raise OtlpError(415, f"Content-Encoding {encoding!r} is not supported (gzip is)")
    request = ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise OtlpError(400, f"body is not an OTLP protobuf trace export: {exc}") from None
    elif content_type == JSON:
        try:
            data = json.loads(body)
            _hex_ids_to_base64(data)
            json_format.ParseDict(data, request, ignore_unknown_fields=True)
        except (ValueError, TypeError, json_format.ParseError, RecursionError) as exc:
            raise OtlpError(400, f"body is not an OTLP JSON trace export: {exc}") from None
    else:
        raise OtlpError(415, f"Content-Type must be {PROTOBUF} or {JSON}")
    return request


def _hex_ids_to_base64(data: Any) -> None:
    """OTLP JSON writes trace and span ids in hex; protobuf's JSON parser expects base64."""
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    for resource_spans in data.get("resourceSpans") or []:
        for scope_spans in (resource_spans or {}).get("scopeSpans") or []:
            for span in (scope_spans or {}).get("spans") or []:
                for name in ("traceId", "spanId", "parentSpanId"):
                    value = span.get(name) if isinstance(span, dict) else None
                    if isinstance(value, str) and value:
                        span[name] = base64.b64encode(bytes.fromhex(value)).decode()


def encode_response(result: TraceResult, content_type: str) -> bytes:
    """ExportTraceServiceResponse; partial_success counts the spans that were not recorded."""
    response = ExportTraceServiceResponse()
    rejected = result.without_session + result.failed
    if rejected:
        response.partial_success.rejected_spans = rejected
        notes = []
        if result.without_session:
            keys = ", ".join(SESSION_KEYS)
            notes.append(f"{result.without_session} spans had no session attribute ({keys})")
        notes.extend(result.errors[:5])
        response.partial_success.error_message = "; ".join(notes)
    if content_type == JSON:
        return json.dumps(json_format.MessageToDict(response)).encode()
    return response.SerializeToString()


# ---- mapping --------------------------------------------------------------------------------


def _value(any_value) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(item) for item in any_value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value) for item in any_value.kvlist_value.values}
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, kind)


def _attributes(key_values) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in key_values}


def _first(keys, *sources: dict[str, Any]) -> str | None:
    for source in sources:
        for name in keys:
            value = source.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
    return None


def _kind(name: str, attrs: dict[str, Any]) -> str | None:
    operation = str(attrs.get("gen_ai.operation.name") or "")
    first_word = name.split(" ", 1)[0].lower()
    if operation in TOOL_OPERATIONS or first_word in TOOL_OPERATIONS:
        return "tool_call"
    if operation in CHAT_OPERATIONS or first_word in CHAT_OPERATIONS:
        return "message"
    if any(marker in attrs for marker in QUERY_MARKERS) or any(
        key in attrs for key in QUERY_TYPE_KEYS[:2]
    ):
        return "query"
    if first_word.split(".", 1)[0].split("_", 1)[0] in QUERY_NAMES:
        return "query"
    return None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _cut(value: Any, limit: int) -> str:
    return str(value or "").strip()[:limit]


def _query_type(name: str, attrs: dict[str, Any]) -> str:
    raw = _first(QUERY_TYPE_KEYS, attrs) or name.split(" ", 1)[0]
    text = _NOT_QUERY_TYPE.sub("_", raw.lower()).strip("_.-")
    if not text or not text[0].isalpha():
        text = f"q_{text}"
    return text[: v.MAX_SHORT_TEXT]


def _parameters(attrs: dict[str, Any]) -> dict[str, Any]:
    skip = set(SESSION_KEYS) | set(USER_KEYS)
    chosen = {}
    for name, value in attrs.items():
        if name in skip or not isinstance(value, str | int | float | bool):
            continue
        chosen[name[: v.MAX_CONTEXT_KEY_LENGTH]] = (
            value[: v.MAX_SUMMARY_LENGTH] if isinstance(value, str) else value
        )
        if len(chosen) >= MAX_PARAMETERS:
            break
    return chosen


def _content(name: str, attrs: dict[str, Any], tokens_in: int, tokens_out: int) -> str:
    for key in CONTENT_KEYS:
        value = attrs.get(key)
        if isinstance(value, str) and value.strip():
            return _cut(value, v.MAX_CONTENT_LENGTH)
        if value:
            return _cut(json.dumps(value, ensure_ascii=False), v.MAX_CONTENT_LENGTH)
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or ""
    text = f"{name} {model}".strip() if model and str(model) not in name else name
    return _cut(f"{text}: {tokens_in} input / {tokens_out} output tokens", v.MAX_CONTENT_LENGTH)


def span_operation(span, attrs: dict[str, Any], session_id: str, event_id: str) -> dict | None:
    """The batch operation (as a dict) a span maps to, or None for spans we do not record."""
    kind = _kind(span.name, attrs)
    if kind is None:
        return None
    duration_ms = max(span.end_time_unix_nano - span.start_time_unix_nano, 0) / 1e6
    duration_ms = min(duration_ms, v.MAX_DURATION_MS)
    error = ""
    if span.status.code == Status.STATUS_CODE_ERROR:
        error = _cut(
            span.status.message or attrs.get("error.type") or "error", v.MAX_SUMMARY_LENGTH
        )
    tokens_in = _int(attrs.get("gen_ai.usage.input_tokens"))
    tokens_out = _int(attrs.get("gen_ai.usage.output_tokens"))
    base = {"op": kind, "session_id": session_id, "event_id": event_id}
    if kind == "tool_call":
        tool = attrs.get("gen_ai.tool.name") or span.name.removeprefix("execute_tool").strip()
        return {
            **base,
            "tool_name": _cut(tool or span.name, v.MAX_NAME_LENGTH),
            "invocation_id": _cut(
                attrs.get("gen_ai.tool.call.id") or span.span_id.hex(), v.MAX_NAME_LENGTH
            ),
            "duration_ms": duration_ms,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "error": error,
        }
    if kind == "message":
        return {
            **base,
            "role": "assistant",
            "content": _content(span.name, attrs, tokens_in, tokens_out),
            **({"tokens_in": tokens_in, "tokens_out": tokens_out} if _message_tokens() else {}),
        }
    rows = attrs.get("db.response.returned_rows")
    summary = attrs.get("fiml.result.summary") or (f"{rows} rows" if rows is not None else "")
    return {
        **base,
        "query_type": _query_type(span.name, attrs),
        "parameters": _parameters(attrs),
        "result_summary": _cut(summary, v.MAX_SUMMARY_LENGTH),
        "execution_time_ms": duration_ms,
        "cache_hit": attrs.get("fiml.cache_hit") is True or attrs.get("cache.hit") is True,
        "error": error,
    }


def _message_tokens() -> bool:
    """Whether message operations carry token counts (they do once the store counts them)."""
    from sessions_app.api.ingest import MessageOp

    return "tokens_in" in MessageOp.model_fields


def _session_type(value: Any) -> str:
    return value if value in SessionType.values else DEFAULT_SESSION_TYPE


def ingest(request: ExportTraceServiceRequest) -> TraceResult:
    """Record every span that names a session; count the rest. All of a request's spans go
    through one batch (`apply_batch`): validated alike, their Redis calls pipelined."""
    from sessions_app.api.ingest import apply_batch

    result = TraceResult()
    spans = []  # (start, session id, user id, session type, span, attributes)
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                result.spans += 1
                attrs = _attributes(span.attributes)
                session_id = _first(SESSION_KEYS, attrs, resource)
                if session_id is None:
                    result.without_session += 1
                    continue
                user_id = _first(USER_KEYS, attrs, resource) or ""
                kind = _session_type(attrs.get(SESSION_TYPE_KEY) or resource.get(SESSION_TYPE_KEY))
                spans.append((span.start_time_unix_nano, session_id, user_id, kind, span, attrs))
    spans.sort(key=lambda item: item[0])
    operations: list[dict] = []
    creates: set[int] = set()  # positions of the create operations
    for _, session_id, user_id, kind, span, attrs in spans:
        if session_id not in result.sessions:
            result.sessions.add(session_id)
            creates.add(len(operations))
            operations.append(_create_operation(session_id, user_id, kind))
        event_id = f"otel:{span.trace_id.hex()}:{span.span_id.hex()}"
        operation = span_operation(span, attrs, session_id, event_id)
        if operation is None:
            result.ignored += 1
        else:
            operations.append(operation)
    for start in range(0, len(operations), MAX_OPERATIONS):
        chunk = operations[start : start + MAX_OPERATIONS]
        for item in apply_batch(chunk, scope="otel")["items"]:
            if item["status"] != "error":
                continue
            error = item["error"]
            is_create = start + item["index"] in creates
            if is_create and error["code"] in EXISTING:
                continue  # the session was there already: its spans still apply
            if not is_create:  # a refused create shows in its spans' own errors
                result.failed += 1
            result.errors.append(f"{item['event_id']}: {error['field']} {error['reason']}")
    return result


def _create_operation(session_id: str, user_id: str, kind: str) -> dict:
    # The event id is the create's idempotency key: a re-export returns the same session.
    return {
        "op": "create",
        "event_id": f"otel:create:{session_id}"[: v.MAX_NAME_LENGTH],
        "session_id": session_id,
        "session_type": kind,
        "user_id": user_id[: v.MAX_USER_ID_LENGTH],
        "source": "otel",
    }
