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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, Field, PlainValidator, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from sessions_app import validation as v
from sessions_app.api import errors
from sessions_app.api.pipeline import run_plans
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
OP_MODELS: tuple[type[BaseModel], ...] = (
    CreateOp,
    QueryOp,
    MessageOp,
    ToolCallOp,
    ContextOp,
    ResultOp,
    MetadataOp,
)
OP_MODELS += (CountersOp, EndOp)
OP_NAMES = tuple(get_args(model.model_fields["op"].annotation)[0] for model in OP_MODELS)


def _raw(value: Any) -> Any:
    # Items are validated one by one in `apply_batch`, so a bad one fails alone.
    return value


class IngestIn(StrictIn):
    operations: list[
        Annotated[dict[str, Any], PlainValidator(_raw, json_schema_input_type=Operation)]
    ] = Field(min_length=1, max_length=MAX_OPERATIONS, description="The writes, in order.")


# ---- applying one operation ---------------------------------------------------------------


@functools.cache
def _parameters(method_name: str, store=None) -> frozenset[str] | None:
    """The keyword names a store method takes (None: it has no such method)."""
    method = getattr(store or get_session_store(), method_name, None)
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


async def acall_store(method_name: str, *args, **kwargs):
    """call_store on the async store (the MCP server's)."""
    from sessions_app.aio import get_session_store as get_async_store

    store = await get_async_store()
    known = _parameters(method_name, store)
    if known is None:
        raise Unsupported(method_name)
    for name in kwargs:
        if name not in known:
            raise Unsupported(method_name, name)
    return await getattr(store, method_name)(*args, **kwargs)


@dataclass
class Plan:
    """One operation as a store call: method, arguments, and how its result reads."""

    method: str
    args: tuple
    kwargs: dict[str, Any]
    read: Callable[[Any], dict | None]  # None: a duplicate event id
    session: str | None = None
    # Creates and ends take several store steps: the session's other writes wait for them.
    barrier: bool = False


def _seq(value) -> dict | None:
    # The store answers an event id it applied before with no position.
    return None if value is None else {"seq": value}


def _nothing(value) -> dict:
    return {}


def _applied(value) -> dict | None:
    # True, or False for an event id applied before (a write without a timeline entry).
    return {} if value else None


def _plan(
    method: str, *args, event_id: str | None = None, read=_nothing, barrier=False, **kwargs
) -> Plan:
    """A Plan, passing the event id where the store takes one; Unsupported if it lacks the
    method or an argument."""
    known = _parameters(method)
    if known is None:
        raise Unsupported(method)
    if event_id is not None and "event_id" in known:
        kwargs["event_id"] = event_id
    for name in kwargs:
        if name not in known:
            raise Unsupported(method, name)
    session = args[0] if args else kwargs.get("session_id")
    return Plan(method, args, kwargs, read, session, barrier)


def _fields(op) -> dict[str, Any]:
    return op.model_dump(exclude={"op", "event_id", "session_id"})


def _create(op: CreateOp, scope: str) -> Plan:
    fields = _fields(op)
    if op.session_id is not None:
        fields["session_id"] = op.session_id
    # The event id doubles as the idempotency key: a retried create returns the first session.
    return _plan(
        "create_session",
        **fields,
        idempotency_key=op.event_id,
        idempotency_scope=scope,
        read=lambda session: {"session_id": str(session.id)},
        barrier=True,
    )


def _query(op: QueryOp, scope: str) -> Plan:
    record = QueryRecord(**_fields(op))
    return _plan("add_query", op.session_id, record, event_id=op.event_id, read=_seq)


def _message(op: MessageOp, scope: str) -> Plan:
    return _plan("add_message", op.session_id, event_id=op.event_id, read=_seq, **_fields(op))


def _tool_call(op: ToolCallOp, scope: str) -> Plan:
    fields = _fields(op)
    return _plan("record_tool_call", op.session_id, event_id=op.event_id, read=_seq, **fields)


def _context(op: ContextOp, scope: str) -> Plan:
    return _plan("update_context", op.session_id, op.key, op.value, event_id=op.event_id)


def _result(op: ResultOp, scope: str) -> Plan:
    args = (op.session_id, op.key, op.value)
    return _plan("store_intermediate_result", *args, event_id=op.event_id)


def _metadata(op: MetadataOp, scope: str) -> Plan:
    fields = op.model_dump(exclude={"op", "event_id", "session_id"}, exclude_none=True)
    if "metadata" in fields:  # the seed's name
        fields["custom_metadata"] = fields.pop("metadata")
    return _plan("update_session_metadata", op.session_id, event_id=op.event_id, **fields)


def _counters(op: CountersOp, scope: str) -> Plan:
    fields = _fields(op)
    return _plan("update_session", op.session_id, event_id=op.event_id, read=_applied, **fields)


def _end(op: EndOp, scope: str) -> Plan:
    return _plan("end_session", op.session_id, status=op.status, event_id=op.event_id, barrier=True)


HANDLERS: dict[str, Callable[[Any, str], Plan]] = {
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


def _outcome(index: int, op, ok: bool, value: Any, plan: Plan | None) -> dict:
    """The result item of one operation from what its store call returned or raised."""
    if not ok:
        exc = value
        if isinstance(exc, Unsupported):
            return _item_error(index, op.event_id, "unsupported", str(exc), exc.argument or "op")
        if _duplicate(exc) or (
            # A retried end: the session already ended the way it asks.
            op.op == "end" and isinstance(exc, SessionNotActive) and exc.status == op.status
        ):
            return {"index": index, "event_id": op.event_id, "status": "duplicate"}
        described = errors.describe(exc)
        if described is None:
            raise exc  # outages (503) and bugs stop the batch
        _, code, reason, field = described
        return _item_error(index, op.event_id, code, reason, field)
    assert plan is not None  # `ok` only after a plan ran
    extra = plan.read(value)
    if extra is None:
        return {"index": index, "event_id": op.event_id, "status": "duplicate"}
    return {"index": index, "event_id": op.event_id, "status": "accepted", **extra}


def apply_batch(raw_operations: list[Any], scope: str = "") -> dict:
    """Validate and apply each operation in order; per-item results and totals.

    With the sync store, the operations' Redis calls go out together, one pipeline per step
    (pipeline.py): a 100-operation batch costs a few round trips, not 100."""
    results: list[dict | None] = []
    pending = []  # (index, op, plan)
    for index, raw in enumerate(raw_operations):
        try:
            op = OPERATION.validate_python(raw)
        except PydanticValidationError as exc:
            results.append(_validation_item(index, raw, exc))
            continue
        try:
            plan = HANDLERS[op.op](op, scope)
        except Exception as exc:  # noqa: BLE001 - sorted out by _outcome
            results.append(_outcome(index, op, False, exc, None))
            continue
        results.append(None)
        pending.append((index, op, plan))
    outcomes = run_plans(get_session_store(), [plan for _, _, plan in pending])
    for (index, op, plan), (ok, value) in zip(pending, outcomes, strict=True):
        results[index] = _outcome(index, op, ok, value, plan)
    totals = {"accepted": 0, "duplicate": 0, "error": 0}
    for item in results:
        assert item is not None  # every pending operation's result is filled in above
        totals[item["status"]] += 1
    return {"items": results, **totals}
