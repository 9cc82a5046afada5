"""The synchronous front-end: runs the core operations on redis-py and Django's ORM."""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from django.db import DatabaseError
from redis.cluster import RedisCluster

from sessions_app import policies
from sessions_app.exceptions import StoreUnavailable
from sessions_app.prometheus import instrument_store_op
from sessions_app.redis_client import execute_durably
from sessions_app.store import archived
from sessions_app.store.core import Archive, Call, Calls, Command, Db, Policies, StoreCore
from sessions_app.store.errors import REQUEST_ERRORS, to_throw
from sessions_app.store.scripts import SCRIPTS, WRITES

# The public operations, each a generator in StoreCore run by both front-ends.
OPERATIONS = (
    "create_session",
    "update_session",
    "update_session_metadata",
    "add_query",
    "add_message",
    "record_tool_call",
    "update_context",
    "store_intermediate_result",
    "extend_session",
    "end_session",
    "complete_session",
    "delete_session",
    "get_session",
    "get_archived_session",
    "get_recent_queries",
    "get_timeline",
    "list_user_sessions",
    "list_live_sessions",
    "list_sessions",
    "live_counts",
    "live_flags",
    "add_conversation_message",
    "link_invocation",
    "get_session_statistics",
    "cleanup_inactive_sessions",
    "cleanup_old_sessions",
    "archive_backlog",
    "live_totals",
)


def drive(gen, do):
    """Run an operation: do(request) for each request it yields, errors thrown back into it."""
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            request = gen.throw(throw) if throw is not None else gen.send(send)
        except StopIteration as stop:
            return stop.value
        send = throw = None
        try:
            send = do(request)
        except REQUEST_ERRORS as exc:
            throw = to_throw(exc)


def _sync_method(name: str):
    op = getattr(StoreCore, name)

    @functools.wraps(op)
    def method(self, *args, **kwargs):
        return drive(op(self, *args, **kwargs), self._do)

    return instrument_store_op(method)


if TYPE_CHECKING:
    # Each operation is rebound below (and in aio.py) to return its core generator's result, which
    # StoreCore's `-> Op` signatures cannot express: to the type checker the front-ends' operations
    # are untyped, not generators.
    _FrontEnd = Any
else:
    _FrontEnd = StoreCore


class SessionStore(_FrontEnd):
    """Create, track and read sessions. Use `get_session_store()` for the shared instance."""

    _session_maker = None  # the FIML seed passes this to SessionAnalytics; any value works

    def __init__(self, client: redis.Redis | None = None):
        self._client = client
        self._bound_client: redis.Redis | None = None
        self._bound_scripts: dict[str, Any] = {}

    @property
    def redis(self) -> redis.Redis:
        from sessions_app.redis_client import get_store_redis

        return self._client or get_store_redis()

    def _scripts(self) -> dict[str, Any]:
        """The Lua scripts registered on the current client (EVALSHA, loaded on first use)."""
        client = self.redis
        if client is not self._bound_client:
            self._bound_scripts = {
                name: client.register_script(source) for name, source in SCRIPTS.items()
            }
            self._bound_client = client
        return self._bound_scripts

    def _do(self, request):
        if type(request) is Call:
            script = self._scripts()[request.script]
            if request.script in WRITES and settings.REDIS_WAIT_REPLICAS > 0:
                # Acknowledged only once enough replicas have it (else StoreUnavailable).
                pipe = self.redis.pipeline(transaction=False)
                script(keys=request.keys, args=request.args, client=pipe)
                return execute_durably(pipe)[0]
            return script(keys=request.keys, args=request.args)
        if type(request) is Command:
            return self.redis.execute_command(request.name, *request.args)
        if type(request) is Policies:
            return policies.all_effective_policies()
        if type(request) is Db:
            return getattr(archived, request.name)(*request.args)
        if type(request) is Calls:  # fan-outs over shards, and batches of writes
            return self._fan_out(request.calls)
        if type(request) is Archive:
            from sessions_app import archive as archiver

            # On failure it stays due in Redis and cleanup_expired_sessions retries.
            with contextlib.suppress(DatabaseError):
                archiver.archive_session(request.session_id)
            return None
        raise TypeError(f"unknown store request {request!r}")

    def _fan_out(self, calls: list[Call]) -> list:
        scripts = self._scripts()
        durable = settings.REDIS_WAIT_REPLICAS > 0 and any(c.script in WRITES for c in calls)
        return run_pipelined(
            self.redis, [(scripts[c.script], c.keys, c.args) for c in calls], durable=durable
        )

    def _bind(self, session):
        if session is not None:
            session_id = session.id
            session.state.history._more = lambda n: self.get_recent_queries(session_id, n)
        return session

    def initialize(self) -> None:
        """Check both services answer (the seed's `initialize()`); StoreUnavailable if not."""
        drive(iter_ping(), self._do)
        policies.all_effective_policies()

    def close(self) -> None:
        """Nothing to release: the connection pool is shared by the process."""

    # ---- archive (the work is in archive/) -----------------------------------------------

    @instrument_store_op
    def archive_session(self, session_id: Any) -> bool:
        """Move one session to Postgres now (ends it as expired if it is still active)."""
        from sessions_app import archive as archiver
        from sessions_app.validation import session_id as checked

        return archiver.archive_session(checked(session_id))

    @instrument_store_op
    def cleanup_expired_sessions(self, now: float | None = None) -> dict[str, int]:
        """Archive every expired, idle or ended session; returns what it did."""
        from sessions_app import archive as archiver

        return archiver.archive_due_sessions(now=now)


def run_reads(client, calls: list[tuple[Any, list, list]]) -> list:
    """Run read-only script calls [(script, keys, args)] (one per shard, say) in one round
    trip per Redis server: see run_pipelined."""
    return run_pipelined(client, calls)


def run_pipelined(client, calls: list[tuple[Any, list, list]], durable: bool = False) -> list:
    """Run script calls [(script, keys, args)] in one round trip per Redis server: a pipeline;
    on a Cluster, one pipeline per master (a Cluster pipeline refuses EVALSHA). Replies in the
    calls' order. With `durable` (writes), each pipeline ends with WAIT for
    REDIS_WAIT_REPLICAS (execute_durably)."""
    if len(calls) == 1 and not durable:
        script, keys, args = calls[0]
        return [script(keys=keys, args=args)]
    if not isinstance(client, RedisCluster):
        return _evalsha_pipeline(client, calls, durable)
    by_node: dict[str, tuple[Any, list[int]]] = {}
    for index, (_, keys, _) in enumerate(calls):
        node = client.get_node_from_key(keys[0]) if keys else client.get_random_node()
        by_node.setdefault(node.name, (node, []))[1].append(index)
    results: list[Any] = [None] * len(calls)
    try:
        for node, indexes in by_node.values():
            replies = _evalsha_pipeline(
                client.get_redis_connection(node), [calls[i] for i in indexes], durable
            )
            for index, value in zip(indexes, replies, strict=True):
                results[index] = value
    except redis.exceptions.ResponseError as exc:
        if not str(exc).startswith(("MOVED", "ASK")):
            raise
        if durable:
            # Replayed one call at a time, the writes would not wait for replicas: the client
            # retries the batch (its event ids make that safe).
            raise StoreUnavailable(f"Redis Cluster slots are moving ({exc}); retry") from exc
        # Slots moving (resharding, failover): one call at a time, the client follows.
        client.nodes_manager.initialize()
        return [script(keys=keys, args=args) for script, keys, args in calls]
    return results


def _evalsha_pipeline(client, calls: list[tuple[Any, list, list]], durable: bool) -> list:
    """One pipeline of EVALSHAs on one server. Not redis-py's Script-in-pipeline, which asks
    SCRIPT EXISTS first (a second round trip per pipeline); a script the server lost (restart,
    SCRIPT FLUSH) answers NOSCRIPT without running, so it is loaded and only those calls are
    sent again."""
    pipe = client.pipeline(transaction=False)
    for script, keys, args in calls:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    replies = execute_durably(pipe, raise_on_error=False) if durable else pipe.execute(False)
    missing = [i for i, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
    if missing:
        for script in {id(calls[i][0]): calls[i][0] for i in missing}.values():
            client.script_load(script.script)
        again = _evalsha_pipeline(client, [calls[i] for i in missing], durable)
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def iter_ping():
    yield Call("counts", [])


for _name in OPERATIONS:
    setattr(SessionStore, _name, _sync_method(_name))
