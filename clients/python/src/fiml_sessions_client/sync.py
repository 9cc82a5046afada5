"""SessionStore: the seed's session API over HTTP, synchronous, with buffered writes."""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
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

logger = logging.getLogger("fiml_sessions_client")
MAX_BATCH = 1000  # the server's per-request maximum (POST /ingest `operations.maxItems`)


class SessionStore(Writes):
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
        transport: httpx.BaseTransport | None = None,
    ):
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.flush_interval = flush_interval
        self.retry = retry or Retry()
        self.report = FlushReport()
        self._http = httpx.Client(
            base_url=url.rstrip("/") + API,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )
        self._event_id = EventIds()
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fiml-sessions-flush", daemon=True)
        self._thread.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    # ---- HTTP ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One request, retried with backoff on connection errors, 429 and 5xx."""
        delays = self.retry.delays()
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                delay = next(delays, None)
                if delay is None:
                    raise StoreUnavailable(0, "unreachable", str(exc)) from exc
                time.sleep(delay)
                continue
            if response.status_code in RETRY_STATUSES:
                delay = next(delays, None)
                if delay is not None:
                    time.sleep(delay)
                    continue
            if response.status_code >= 400:
                raise error_from(response.status_code, _json(response))
            return response

    # ---- buffered writes ----------------------------------------------------------------

    def _enqueue(self, operation: dict[str, Any]) -> str:
        operation["event_id"] = event_id = self._event_id()
        with self._lock:
            self._buffer.append(operation)
            full = len(self._buffer) >= self.batch_size
        if full:
            self.flush()
        return event_id

    def flush(self) -> FlushReport:
        """Send every buffered write now; raises StoreUnavailable if the server stays away."""
        with self._flushing:
            while True:
                with self._lock:
                    batch = self._buffer[: self.batch_size]
                    del self._buffer[: len(batch)]
                if not batch:
                    return self.report
                try:
                    self._send(batch)
                except ApiError:
                    with self._lock:  # keep them, in order, for the next flush
                        self._buffer[:0] = batch
                    raise

    def _send(self, batch: list[dict[str, Any]]) -> None:
        """POST one batch; a refused request is split (413) or reported, never retried."""
        try:
            response = self._request("POST", "/ingest", json={"operations": batch})
        except ApiError as exc:
            if not is_refusal(exc):
                raise
            if exc.status == 413 and len(batch) > 1:  # too big for the server: halve it
                half = len(batch) // 2
                self._send(batch[:half])
                self._send(batch[half:])
                return
            self.report.refuse(batch, exc)
            return
        self.report.add(batch, response.json())

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._buffer:
                try:
                    self.flush()
                except ApiError as exc:
                    logger.warning("fiml-sessions: flush failed, will retry: %s", exc)

    def close(self) -> None:
        """Flush what is buffered and stop the background flusher."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        try:
            self.flush()
        finally:
            self._http.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update_session(self, session_id: Any, session: Any = None, **deltas) -> None:
        """Apply deltas: AIECS counters (increment_requests, add_processing_time, mark_error)
        and context / intermediate results (from `session.state` or keyword dicts)."""
        for operation in self._update_operations(session_id, session, **deltas):
            self._enqueue(operation)

    def track_query(
        self, session_id: Any, query_type: str, parameters: dict | None = None
    ) -> TrackQuery:
        """Time a block or a function and record it as a query (error and summary included)."""
        return TrackQuery(self, session_id, query_type, parameters)

    # ---- direct calls -------------------------------------------------------------------

    def create_session(
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
        return Session.from_json(
            self._request("POST", "/sessions", json=body, headers=headers).json()
        )

    def get_session(self, session_id: Any, recent_events: int = 20) -> Session | None:
        """The session (live or archived), or None."""
        self.flush()
        try:
            response = self._request(
                "GET", f"/sessions/{session_id}", params={"recent_events": recent_events}
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return Session.from_json(response.json())

    def list_user_sessions(
        self,
        user_id: str,
        include_archived: bool = False,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        """A user's sessions, newest first."""
        return self.list_sessions(
            user_id=user_id, include_archived=include_archived, limit=limit, cursor=cursor
        )

    def list_sessions(self, **filters) -> SessionPage:
        """Sessions by user_id, status, tags, session_type, date range; follow next_cursor."""
        self.flush()
        params = {
            name: (
                getattr(value, "value", value)
                if not isinstance(value, bool)
                else str(value).lower()
            )
            for name, value in drop_none(filters).items()
        }
        body = self._request("GET", "/sessions", params=params).json()
        return SessionPage([Session.from_json(item) for item in body["items"]], body["next_cursor"])

    def extend_session(self, session_id: Any, hours: float = 24) -> datetime:
        """Push the expiry back by `hours`; returns the new expiry."""
        self.flush()
        body = self._request("POST", f"/sessions/{session_id}/extend", json={"hours": hours}).json()
        return datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))

    def end_session(self, session_id: Any, status: str = "completed") -> Session:
        """End the session (after sending its buffered writes); it is archived right away."""
        self.flush()
        status = getattr(status, "value", status)
        body = self._request("POST", f"/sessions/{session_id}/end", json={"status": status}).json()
        return Session.from_json(body)

    complete_session = end_session

    def delete_session(self, session_id: Any) -> bool:
        self.flush()
        try:
            self._request("DELETE", f"/sessions/{session_id}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def get_session_statistics(self, session_id: Any) -> dict[str, Any] | None:
        """The MCP manager's per-session statistics, or None for an unknown session."""
        self.flush()
        try:
            return self._request("GET", f"/sessions/{session_id}/statistics").json()
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise


class TrackQuery:
    """`with store.track_query(...) as q:` or `@store.track_query(...)`: records one query."""

    def __init__(self, store: SessionStore, session_id: Any, query_type: str, parameters):
        self.store = store
        self.args = (session_id, query_type, parameters)
        self.timer = None

    def __enter__(self):
        self.timer = self.store._timer(*self.args)
        return self.timer

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.store.add_query(self.timer.session_id, self.timer.record(exc))
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with TrackQuery(self.store, *self.args) as timer:
                result = func(*args, **kwargs)
                timer.result_summary = summarize(result)
                return result

        return wrapper


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _close_at_exit(ref) -> None:
    store = ref()
    if store is not None:
        try:
            store.close()
        except ApiError as exc:
            logger.error("fiml-sessions: %d writes not sent at exit: %s", len(store._buffer), exc)


def get_session_store_sync(url: str, api_key: str, **options) -> SessionStore:
    """A synchronous store for `url` (the site's base URL) with this API key."""
    return SessionStore(url, api_key, **options)
