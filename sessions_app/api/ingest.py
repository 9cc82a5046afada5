"""Batch ingestion (`POST /api/v1/ingest`): up to MAX_OPERATIONS writes across any sessions.

Each operation carries the fields of its single route plus `op`, `session_id` and a
client-generated `event_id`; the store applies an event id once, so a retried batch is safe.
Every operation is validated and applied on its own: one bad item never sinks the others.
A Redis or Postgres outage stops the batch (503); the client retries it whole with the same
event ids, and the operations that had landed come back as `duplicate`.
"""

from __future__ import annotations

import functools
import inspect
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from sessions_app import validation as v
from sessions_app.api import errors
from sessions_app.api.schemas import (
    EndIn,
    EntryIn,
    MessageIn,
    QueryIn,
    SessionCountersIn,
    SessionCreateFields,
    SessionIdText,
    SessionMetadataIn,
    StrictIn,
    ToolCallIn,
)
from sessions_app.domain import QueryRecord
from sessions_app.exceptions import SessionNotActive
from sessions_app.store import get_session_store

MAX_OPERATIONS = 1000

EventId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=v.MAX_NAME_LENGTH,
        pattern=r"^[\x21-\x7e]+$",
        description="Client-generated id of this write; the same id is applied once.",
        examples=["01HZX3Q7-0001"],
    ),
]


class _Op(StrictIn):
    event_id: EventId
    session_id: SessionIdText


class CreateOp(SessionCreateFields):
    op: Literal["create"]
    event_id: EventId
    session_id: SessionIdText | None = Field(
        None, description="Caller-chosen session id; generated when absent."
    )


class QueryOp(_Op, QueryIn):
    op: Literal["query"]


class MessageOp(_Op, MessageIn):
    op: Literal["message"]


class ToolCallOp(_Op, ToolCallIn):
    op: Literal["tool_call"]


class ContextOp(_Op, EntryIn):
    op: Literal["context"]


class ResultOp(_Op, EntryIn):
    op: Literal["result"]


class MetadataOp(_Op, SessionMetadataIn):
    op: Literal["metadata"]


class CountersOp(_Op, SessionCountersIn):
    op: Literal["counters"]


class EndOp(_Op, EndIn):
    op: Literal["end"]


Operation = Annotated[
    CreateOp
    | QueryOp
    | MessageOp
    | ToolCallOp
    | ContextOp
    | ResultOp
    | MetadataOp
    | CountersOp
    | EndOp,
    Field(discriminator="op"),
]
OPERATION = TypeAdapter(Operation)
OP_MODELS = (CreateOp, QueryOp, MessageOp, ToolCallOp, ContextOp, ResultOp, MetadataOp)
OP_MODELS += (CountersOp, EndOp)
OP_NAMES = tuple(model.model_fields["op"].annotation.__args__[0] for model in OP_MODELS)


def _raw(value: Any) -> Any:
    # Items are validated one by one in `apply_batch`, so a bad one fails alone.
    return value


class IngestIn(StrictIn):
    operations: list[
        Annotated[dict[str, Any], PlainValidator(_raw, json_schema_input_type=Operation)]
    ] = Field(min_length=1, max_length=MAX_OPERATIONS, description="The writes, in order.")


# ---- applying one operation ---------------------------------------------------------------


@functools.cache
def _parameters(method_name: str) -> frozenset[str] | None:
    """The keyword names a store method takes (None: it has no such method)."""
    method = getattr(get_session_store(), method_name, None)
    if method is None:
        return None
    return frozenset(inspect.signature(method).parameters)


class Unsupported(Exception):
    """The store this server runs lacks a method or an argument an interface offers."""

    def __init__(self, method_name: str, argument: str | None = None):
        self.method_name = method_name
        self.argument = argument
        what = f"{method_name}({argument}=...)" if argument else f"{method_name}()"
        super().__init__(f"this server's store does not support {what}")


def call_store(method_name: str, *args, **kwargs):
    """Call a store method by name; Unsupported if the store lacks it or one of the kwargs."""
    known = _parameters(method_name)
    if known is None:
        raise Unsupported(method_name)
    for name in kwargs:
        if name not in known:
            raise Unsupported(method_name, name)
    return getattr(get_session_store(), method_name)(*args, **kwargs)


def _call(method_name: str, *args, event_id: str, **kwargs):
    """call_store, passing the event id where the store takes one."""
    if "event_id" in (_parameters(method_name) or ()):
        kwargs["event_id"] = event_id
    return call_store(method_name, *args, **kwargs)


def _create(op: CreateOp, scope: str):
    fields = op.model_dump(exclude={"op", "event_id", "session_id"})
    if op.session_id is not None:
        fields["session_id"] = op.session_id
    # The event id doubles as the idempotency key: a retried create returns the first session.
    session = call_store(
        "create_session", **fields, idempotency_key=op.event_id, idempotency_scope=scope
    )
    return {"session_id": str(session.id)}


def _query(op: QueryOp, scope: str):
    record = QueryRecord(**op.model_dump(exclude={"op", "event_id", "session_id"}))
    return {"seq": _call("add_query", op.session_id, record, event_id=op.event_id)}


def _message(op: MessageOp, scope: str):
    fields = op.model_dump(exclude={"op", "event_id", "session_id"})
    return {"seq": _call("add_message", op.session_id, event_id=op.event_id, **fields)}


def _tool_call(op: ToolCallOp, scope: str):
    fields = op.model_dump(exclude={"op", "event_id", "session_id"})
    return {"seq": _call("record_tool_call", op.session_id, event_id=op.event_id, **fields)}


def _context(op: ContextOp, scope: str):
    _call("update_context", op.session_id, op.key, op.value, event_id=op.event_id)
    return {}


def _result(op: ResultOp, scope: str):
    _call("store_intermediate_result", op.session_id, op.key, op.value, event_id=op.event_id)
    return {}


def _metadata(op: MetadataOp, scope: str):
    fields = op.model_dump(exclude={"op", "event_id", "session_id"}, exclude_none=True)
    if "metadata" in fields:  # the seed's name
        fields["custom_metadata"] = fields.pop("metadata")
    _call("update_session_metadata", op.session_id, event_id=op.event_id, **fields)
    return {}


def _counters(op: CountersOp, scope: str):
    fields = op.model_dump(exclude={"op", "event_id", "session_id"})
    _call("update_session", op.session_id, event_id=op.event_id, **fields)
    return {}


def _end(op: EndOp, scope: str):
    try:
        _call("end_session", op.session_id, status=op.status, event_id=op.event_id)
    except SessionNotActive as exc:
        if exc.status == op.status:  # a retried end: the session already ended this way
            return {"duplicate": True}
        raise
    return {}


HANDLERS = {
    "create": _create,
    "query": _query,
    "message": _message,
    "tool_call": _tool_call,
    "context": _context,
    "result": _result,
    "metadata": _metadata,
    "counters": _counters,
    "end": _end,
}


def _duplicate(exc: Exception) -> bool:
    from sessions_app import exceptions

    duplicate = getattr(exceptions, "DuplicateEvent", None)
    return duplicate is not None and isinstance(exc, duplicate)


def _item_error(index: int, event_id, code: str, reason: str, field: str | None) -> dict:
    return {
        "index": index,
        "event_id": event_id,
        "status": "error",
        "error": {"code": code, "field": field, "reason": reason},
    }


def _validation_item(index: int, raw: Any, exc: PydanticValidationError) -> dict:
    first = errors.first_error(exc.errors())
    loc = [str(part) for part in first.get("loc", ())]
    if loc and loc[0] in OP_NAMES:  # the discriminated union puts the tag first
        loc = loc[1:]
    field = ".".join(loc) or None
    kind = first.get("type")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field, reason, code = "op", f"must be one of {', '.join(OP_NAMES)}", "invalid_input"
    else:
        _, code, reason = errors.pydantic_error(first, field)
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    return _item_error(index, event_id if isinstance(event_id, str) else None, code, reason, field)


def apply_operation(index: int, op, scope: str = "") -> dict:
    """Apply one validated operation; its result item (accepted, duplicate or error).
    `scope` keeps creates' idempotency per client (the API key)."""
    try:
        extra = HANDLERS[op.op](op, scope)
    except Unsupported as exc:
        return _item_error(index, op.event_id, "unsupported", str(exc), "op")
    except Exception as exc:
        if _duplicate(exc):
            return {"index": index, "event_id": op.event_id, "status": "duplicate"}
        described = errors.describe(exc)
        if described is None:
            raise  # outages (503) and bugs stop the batch
        _, code, reason, field = described
        return _item_error(index, op.event_id, code, reason, field)
    # The store answers an event id it applied before with no new position.
    duplicate = extra.pop("duplicate", False) or ("seq" in extra and extra["seq"] is None)
    if duplicate:
        extra.pop("seq", None)
    status = "duplicate" if duplicate else "accepted"
    return {"index": index, "event_id": op.event_id, "status": status, **extra}


def apply_batch(raw_operations: list[Any], scope: str = "") -> dict:
    """Validate and apply each operation in order; per-item results and totals."""
    results = []
    for index, raw in enumerate(raw_operations):
        try:
            op = OPERATION.validate_python(raw)
        except PydanticValidationError as exc:
            results.append(_validation_item(index, raw, exc))
            continue
        results.append(apply_operation(index, op, scope))
    totals = {"accepted": 0, "duplicate": 0, "error": 0}
    for item in results:
        totals[item["status"]] += 1
    return {"items": results, **totals}
