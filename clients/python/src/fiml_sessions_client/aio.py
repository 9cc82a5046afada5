"""AsyncSessionStore: the seed's `await store.method(...)` API over HTTP, with buffered writes."""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import weakref
from datetime import datetime
from typing import Any

import httpx

from fiml_sessions_client._core import (
    API,
    RETRY_STATUSES,
    ApiError,
    EventIds,
    FlushReport,
    Retry,
    Session,
    SessionPage,
    SessionType,
    StoreUnavailable,
    drop_none,
    error_from,
    is_refusal,
    summarize,
)
from fiml_sessions_client._writes import Writes
from fiml_sessions_client.sync import MAX_BATCH, _json

logger = logging.getLogger("fiml_sessions_client")


class AsyncSessionStore(Writes):
    """Reads go straight to the server (after flushing pending writes); writes are batched."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        retry: Retry | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.url = url
        self.api_key = api_key
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.flush_interval = flush_interval
        self.retry = retry or Retry()
        self.report = FlushReport()
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/") + API,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )
        self._event_id = EventIds()
        self._buffer: list[dict[str, Any]] = []
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._closed = False
        atexit.register(_send_at_exit, weakref.ref(self))

    # ---- HTTP ---------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One request, retried with backoff on connection errors, 429 and 5xx."""
        delays = self.retry.delays()
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                delay = next(delays, None)
                if delay is None:
                    raise StoreUnavailable(0, "unreachable", str(exc)) from exc
                await asyncio.sleep(delay)
                continue
            if response.status_code in RETRY_STATUSES:
                delay = next(delays, None)
                if delay is not None:
                    await asyncio.sleep(delay)
                    continue
            if response.status_code >= 400:
                raise error_from(response.status_code, _json(response))
            return response

    # ---- buffered writes ----------------------------------------------------------------

    async def _enqueue(self, operation: dict[str, Any]) -> str:
        operation["event_id"] = event_id = self._event_id()
        self._buffer.append(operation)
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run())
        if len(self._buffer) >= self.batch_size:
            await self.flush()
        return event_id

    async def flush(self) -> FlushReport:
        """Send every buffered write now; raises StoreUnavailable if the server stays away."""
        async with self._flushing:
            while self._buffer:
                batch = self._buffer[: self.batch_size]
                del self._buffer[: len(batch)]
                try:
                    await self._send(batch)
                except ApiError:
                    self._buffer[:0] = batch  # keep them, in order, for the next flush
                    raise
        return self.report

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        """POST one batch; a refused request is split (413) or reported, never retried."""
        try:
            response = await self._request("POST", "/ingest", json={"operations": batch})
        except ApiError as exc:
            if not is_refusal(exc):
                raise
            if exc.status == 413 and len(batch) > 1:  # too big for the server: halve it
                half = len(batch) // 2
                await self._send(batch[:half])
                await self._send(batch[half:])
                return
            self.report.refuse(batch, exc)
            return
        self.report.add(batch, response.json())

    async def _run(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.flush_interval)
            if self._buffer:
                try:
                    await self.flush()
                except ApiError as exc:
                    logger.warning("fiml-sessions: flush failed, will retry: %s", exc)

    async def aclose(self) -> None:
        """Flush what is buffered and stop the background flusher."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        try:
            await self.flush()
        finally:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncSessionStore:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def update_session(self, session_id: Any, session: Any = None, **deltas) -> None:
        """Apply deltas: AIECS counters (increment_requests, add_processing_time, mark_error)
        and context / intermediate results (from `session.state` or keyword dicts)."""
        for operation in self._update_operations(session_id, session, **deltas):
            await self._enqueue(operation)

    def track_query(
        self, session_id: Any, query_type: str, parameters: dict | None = None
    ) -> AsyncTrackQuery:
        """Time a block (`async with`) or a coroutine function (decorator) as a query."""
        return AsyncTrackQuery(self, session_id, query_type, parameters)

    # ---- direct calls -------------------------------------------------------------------

    async def create_session(
        self,
        assets: list[str] | None = None,
        session_type: SessionType | str = SessionType.EQUITY,
        user_id: str = "",
        ttl_hours: float | None = None,
        tags: list[str] | None = None,
        *,
        session_id: str | None = None,
        purpose: str = "",
        source: str = "",
        device: str = "",
        ip: str | None = None,
        preferences: dict | None = None,
        metadata: dict | None = None,
    ) -> Session:
        """Create a session now (not buffered); retries cannot create two."""
        body = drop_none(
            {
                "session_id": session_id,
                "session_type": getattr(session_type, "value", session_type),
                "user_id": user_id or "",
                "assets": list(assets or []),
                "tags": list(tags or []),
                "ttl_hours": ttl_hours,
                "purpose": purpose,
                "source": source,
                "device": device,
                "ip": ip,
                "preferences": preferences or {},
                "metadata": metadata or {},
            }
        )
        headers = {"Idempotency-Key": self._event_id()}
        response = await self._request("POST", "/sessions", json=body, headers=headers)
        return Session.from_json(response.json())

    async def get_session(self, session_id: Any, recent_events: int = 20) -> Session | None:
        """The session (live or archived), or None."""
        await self.flush()
        try:
            response = await self._request(
                "GET", f"/sessions/{session_id}", params={"recent_events": recent_events}
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return Session.from_json(response.json())

    async def list_user_sessions(
        self,
        user_id: str,
        include_archived: bool = False,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        """A user's sessions, newest first."""
        return await self.list_sessions(
            user_id=user_id, include_archived=include_archived, limit=limit, cursor=cursor
        )

    async def list_sessions(self, **filters) -> SessionPage:
        """Sessions by user_id, status, tags, session_type, date range; follow next_cursor."""
        await self.flush()
        params = {
            name: str(value).lower() if isinstance(value, bool) else getattr(value, "value", value)
            for name, value in drop_none(filters).items()
        }
        body = (await self._request("GET", "/sessions", params=params)).json()
        items = [Session.from_json(item) for item in body["items"]]
        return SessionPage(items, body["next_cursor"])

    async def extend_session(self, session_id: Any, hours: float = 24) -> datetime:
        """Push the expiry back by `hours`; returns the new expiry."""
        await self.flush()
        path = f"/sessions/{session_id}/extend"
        body = (await self._request("POST", path, json={"hours": hours})).json()
        return datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))

    async def end_session(self, session_id: Any, status: str = "completed") -> Session:
        """End the session (after sending its buffered writes); it is archived right away."""
        await self.flush()
        status = getattr(status, "value", status)
        path = f"/sessions/{session_id}/end"
        return Session.from_json(
            (await self._request("POST", path, json={"status": status})).json()
        )

    complete_session = end_session

    async def delete_session(self, session_id: Any) -> bool:
        await self.flush()
        try:
            await self._request("DELETE", f"/sessions/{session_id}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def get_session_statistics(self, session_id: Any) -> dict[str, Any] | None:
        """The MCP manager's per-session statistics, or None for an unknown session."""
        await self.flush()
        try:
            return (await self._request("GET", f"/sessions/{session_id}/statistics")).json()
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise


class AsyncTrackQuery:
    """`async with store.track_query(...) as q:` or `@store.track_query(...)` on a coroutine."""

    def __init__(self, store: AsyncSessionStore, session_id: Any, query_type: str, parameters):
        self.store = store
        self.args = (session_id, query_type, parameters)
        self.timer = None

    async def __aenter__(self):
        self.timer = self.store._timer(*self.args)
        return self.timer

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        await self.store.add_query(self.timer.session_id, self.timer.record(exc))
        return False

    def __call__(self, func):
        @functools.wraps(func)
        async def wrapper(*args, **kwargs):
            async with AsyncTrackQuery(self.store, *self.args) as timer:
                result = await func(*args, **kwargs)
                timer.result_summary = summarize(result)
                return result

        return wrapper


def _send_at_exit(ref) -> None:
    """At interpreter exit no event loop runs: send what is left with a blocking client."""
    store = ref()
    if store is None or not store._buffer:
        return
    from fiml_sessions_client.sync import SessionStore

    rescue = SessionStore(store.url, store.api_key, batch_size=store.batch_size, retry=store.retry)
    rescue._buffer = store._buffer  # event ids kept: a batch that already landed is a duplicate
    store._buffer = []
    try:
        rescue.close()
    except ApiError as exc:
        logger.error("fiml-sessions: %d writes not sent at exit: %s", len(rescue._buffer), exc)


async def get_session_store(url: str, api_key: str, **options) -> AsyncSessionStore:
    """The seed's `await get_session_store()`, for a remote server: `url` and an API key."""
    return AsyncSessionStore(url, api_key, **options)
