"""The buffered writes, shared by both stores: each builds one ingest operation and enqueues it.

`_enqueue` returns the event id (sync store) or an awaitable of it (async store), so the same
methods serve `store.add_query(...)` and `await store.add_query(...)`.
"""

from __future__ import annotations

from typing import Any

from fiml_sessions_client._core import QueryRecord, Timer, drop_none, query_op


class Writes:
    def _enqueue(self, operation: dict[str, Any]):  # pragma: no cover - each store has one
        raise NotImplementedError

    def add_query(self, session_id: Any, query: QueryRecord):
        """Record a query (buffered)."""
        return self._enqueue(query_op(session_id, query))

    def add_message(
        self,
        session_id: Any,
        role: str,
        content: str,
        tool_name: str = "",
        invocation_id: str = "",
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost: float = 0.0,
    ):
        """Record a conversation message, with the model tokens and cost it took (buffered)."""
        operation = {
            "op": "message",
            "session_id": str(session_id),
            "role": getattr(role, "value", role),
            "content": content,
            "tool_name": tool_name or "",
            "invocation_id": invocation_id or "",
        }
        # Sent only when used, so a server without message tokens still takes the rest.
        usage = {"tokens_in": tokens_in, "tokens_out": tokens_out, "cost": cost}
        return self._enqueue({**operation, **{k: value for k, value in usage.items() if value}})

    add_conversation_message = add_message

    def record_tool_call(
        self,
        session_id: Any,
        tool_name: str,
        invocation_id: str = "",
        duration_ms: float | None = None,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost: float = 0.0,
        error: str = "",
    ):
        """Record a tool call with its duration, tokens and cost (buffered)."""
        return self._enqueue(
            {
                "op": "tool_call",
                "session_id": str(session_id),
                "tool_name": tool_name,
                "invocation_id": invocation_id or "",
                "duration_ms": duration_ms,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "cost": cost,
                "error": error or "",
            }
        )

    def link_invocation(
        self,
        session_id: Any,
        invocation_id: str,
        tool_name: str,
        invocation_dir: Any = None,
        duration_ms: float | None = None,
    ):
        """The MCP manager's link_invocation: a tool call carrying the invocation id."""
        return self.record_tool_call(
            session_id, tool_name, invocation_id=invocation_id, duration_ms=duration_ms
        )

    def update_context(self, session_id: Any, key: str, value: Any):
        """Set one context key (buffered)."""
        return self._enqueue(
            {"op": "context", "session_id": str(session_id), "key": key, "value": value}
        )

    def store_intermediate_result(self, session_id: Any, key: str, value: Any):
        """Set one intermediate result (buffered)."""
        return self._enqueue(
            {"op": "result", "session_id": str(session_id), "key": key, "value": value}
        )

    def update_session_metadata(
        self,
        session_id: Any,
        purpose: str | None = None,
        tags: list[str] | None = None,
        custom_metadata: dict[str, Any] | None = None,
    ):
        """Change purpose, tags and custom metadata; what is None stays (buffered)."""
        return self._enqueue(
            {
                "op": "metadata",
                "session_id": str(session_id),
                **drop_none({"purpose": purpose, "tags": tags, "metadata": custom_metadata}),
            }
        )

    def record_request(
        self,
        session_id: Any,
        increment_requests: bool = True,
        add_processing_time: float = 0.0,
        mark_error: bool = False,
    ):
        """AIECS counters: one request, its processing time in seconds, an error (buffered)."""
        return self._enqueue(
            {
                "op": "counters",
                "session_id": str(session_id),
                "increment_requests": increment_requests,
                "add_processing_time": add_processing_time,
                "mark_error": mark_error,
            }
        )

    def _update_operations(
        self,
        session_id: Any,
        session: Any = None,
        *,
        increment_requests: bool = False,
        add_processing_time: float = 0.0,
        mark_error: bool = False,
        context: dict[str, Any] | None = None,
        intermediate_results: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The operations of update_session: AIECS counters and context/result deltas."""
        session_id = str(session_id)
        operations = []
        if increment_requests or add_processing_time or mark_error:
            operations.append(
                {
                    "op": "counters",
                    "session_id": session_id,
                    "increment_requests": increment_requests,
                    "add_processing_time": add_processing_time,
                    "mark_error": mark_error,
                }
            )
        state = getattr(session, "state", None)
        context = {**(getattr(state, "context", None) or {}), **(context or {})}
        results = {
            **(getattr(state, "intermediate_results", None) or {}),
            **(intermediate_results or {}),
        }
        for kind, values in (("context", context), ("result", results)):
            for key, value in values.items():
                operations.append(
                    {"op": kind, "session_id": session_id, "key": key, "value": value}
                )
        return operations

    def _timer(self, session_id: Any, query_type: str, parameters: dict | None) -> Timer:
        return Timer(session_id, query_type, parameters)
