"""The asyncio front-end: the same core operations on redis.asyncio and Django's async ORM.

Native: no thread hop per call. Only `end_session`'s immediate archive (psycopg COPY in the
archiver) and a history's `get_recent_queries(n)` beyond the loaded queries run in a thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import weakref
from typing import Any

import redis
import redis.asyncio as aredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from sessions_app import policies
from sessions_app.prometheus import instrument_store_op
from sessions_app.redis_client import ReplicaWaitFailed
from sessions_app.store import archived
from sessions_app.store.core import Archive, Call, Calls, Command, Db, Policies, StoreCore
from sessions_app.store.errors import REQUEST_ERRORS, to_throw
from sessions_app.store.scripts import SCRIPTS, WRITES
from sessions_app.store.sync import OPERATIONS, _FrontEnd, iter_ping

_thread_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="store")


def make_async_client(url: str):
    """A client like redis_client.get_store_redis's (plain, Sentinel or Cluster, as the
    settings say), for one event loop."""
    options: dict[str, Any] = {
        "socket_timeout": settings.REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": settings.REDIS_CONNECT_TIMEOUT,
        "decode_responses": True,
        # No retries: a write whose reply was lost may have been applied (see get_store_redis).
        "retry": AsyncRetry(NoBackoff(), 0),
    }
    if settings.REDIS_SENTINELS:
        from redis.asyncio.sentinel import Sentinel

        parsed = redis.connection.parse_url(url) if url else {}
        sentinel = Sentinel(
            settings.REDIS_SENTINELS,
            sentinel_kwargs={
                "socket_timeout": options["socket_timeout"],
                "socket_connect_timeout": options["socket_connect_timeout"],
            },
        )
        return sentinel.master_for(
            settings.REDIS_SENTINEL_MASTER,
            db=parsed.get("db", 0),
            password=parsed.get("password"),
            username=parsed.get("username"),
            **options,
        )
    if settings.REDIS_CLUSTER:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, **options)
    return aredis.Redis.from_url(url, health_check_interval=30, **options)


async def adrive(gen, do):
    """Run an operation in async code: await do(request) for each request it yields."""
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            request = gen.throw(throw) if throw is not None else gen.send(send)
        except StopIteration as stop:
            return stop.value
        send = throw = None
        try:
            send = await do(request)
        except REQUEST_ERRORS as exc:
            throw = to_throw(exc)


def _async_method(name: str):
    op = getattr(StoreCore, name)

    @functools.wraps(op)
    async def method(self, *args, **kwargs):
        return await adrive(op(self, *args, **kwargs), self._do)

    return instrument_store_op(method)


class AsyncSessionStore(_FrontEnd):
    """The store for asyncio code: every operation of SessionStore, awaitable."""

    _session_maker = None  # the FIML seed passes this to SessionAnalytics; any value works

    def __init__(self, url: str | None = None):
        self._url = url
        # One client (and pool) per event loop: a pool's connections belong to their loop.
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _state(self) -> tuple[aredis.Redis, dict]:
        loop = asyncio.get_running_loop()
        state = self._clients.get(loop)
        if state is None:
            client = make_async_client(self._url or settings.REDIS_URL)
            scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}
            state = self._clients[loop] = (client, scripts)
        return state

    @property
    def redis(self) -> aredis.Redis:
        return self._state()[0]

    async def _do(self, request):
        if type(request) is Call:
            client, scripts = self._state()
            script = scripts[request.script]
            if request.script in WRITES and settings.REDIS_WAIT_REPLICAS > 0:
                # As redis_client.execute_durably: acknowledged once enough replicas have it.
                pipe = client.pipeline(transaction=False)
                await script(keys=request.keys, args=request.args, client=pipe)
                pipe.execute_command(
                    "WAIT", settings.REDIS_WAIT_REPLICAS, settings.REDIS_WAIT_TIMEOUT_MS
                )
                result, confirmed = await pipe.execute()
                if int(confirmed) < settings.REDIS_WAIT_REPLICAS:
                    raise ReplicaWaitFailed(
                        f"write confirmed by {confirmed} of {settings.REDIS_WAIT_REPLICAS} "
                        f"replica(s) within {settings.REDIS_WAIT_TIMEOUT_MS} ms"
                    )
                return result
            return await script(keys=request.keys, args=request.args)
        if type(request) is Command:
            return await self._state()[0].execute_command(request.name, *request.args)
        if type(request) is Policies:
            return await policies.aall_effective_policies()
        if type(request) is Db:
            return await getattr(archived, "a" + request.name)(*request.args)
        if type(request) is Calls:
            client, scripts = self._state()
            if len(request.calls) == 1 or not isinstance(client, aredis.Redis):
                # One call, or a Cluster (its pipeline refuses EVALSHA): the calls run
                # concurrently, each routed to its shard's master.
                return list(
                    await asyncio.gather(
                        *[
                            scripts[call.script](keys=call.keys, args=call.args)
                            for call in request.calls
                        ]
                    )
                )
            pipe = client.pipeline(transaction=False)
            for call in request.calls:
                await scripts[call.script](keys=call.keys, args=call.args, client=pipe)
            return await pipe.execute()
        if type(request) is Archive:
            from sessions_app import archive as archiver

            with contextlib.suppress(DatabaseError):
                await sync_to_async(archiver.archive_session)(request.session_id)
            return None
        raise TypeError(f"unknown store request {request!r}")

    def _bind(self, session):
        if session is not None:
            session_id = session.id

            def more(n: int):
                # Called from sync code inside the loop: the sync store, in a worker thread.
                from sessions_app.store import get_session_store

                job = _thread_pool.submit(get_session_store().get_recent_queries, session_id, n)
                return job.result()

            session.state.history._more = more
        return session

    async def initialize(self) -> None:
        """Check both services answer (the seed's `initialize()`); StoreUnavailable if not."""
        await adrive(iter_ping(), self._do)
        await policies.aall_effective_policies()

    async def close(self) -> None:
        """Close this loop's connections."""
        loop = asyncio.get_running_loop()
        state = self._clients.pop(loop, None)
        if state is not None:
            await state[0].aclose()

    @instrument_store_op
    async def archive_session(self, session_id: Any) -> bool:
        """Move one session to Postgres now (the archiver's COPY runs in a thread)."""
        from sessions_app import archive as archiver
        from sessions_app.validation import session_id as checked

        return await sync_to_async(archiver.archive_session)(checked(session_id))

    @instrument_store_op
    async def cleanup_expired_sessions(self, now: float | None = None) -> dict[str, int]:
        """Archive every expired, idle or ended session (in a thread); returns what it did."""
        from sessions_app import archive as archiver

        return await sync_to_async(archiver.archive_due_sessions)(now=now)


for _name in OPERATIONS:
    setattr(AsyncSessionStore, _name, _async_method(_name))

_async_store: AsyncSessionStore | None = None


async def get_async_session_store() -> AsyncSessionStore:
    """The process-wide async store (awaitable, as in the FIML seed)."""
    global _async_store
    if _async_store is None:
        _async_store = AsyncSessionStore()
    return _async_store
