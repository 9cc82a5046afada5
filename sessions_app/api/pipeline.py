"""Run many store operations with their Redis calls pipelined, in lockstep.

The store writes each operation once as a generator of requests (`sessions_app.store.core`);
its sync front-end runs one at a time, one round trip per script call. A batch instead advances
all its operations together: requests that are not script calls (policies, Postgres reads,
archiving) are answered at once, and every operation's next script call goes out in one
pipeline, in the batch's order, the event writes of one session merged into one script call
(store.core.coalesce). A 100-event batch costs one round trip per step (usually one), not 100.
Per session, order is kept: a plan marked `barrier` (create, end: several steps)
waits for the session's earlier plans and holds back its later ones. Only the store's requests
and its own request runner are used: the Redis layout stays the store's business.
"""

from __future__ import annotations

from typing import Any

import redis
from django.db import DatabaseError

from sessions_app.store.core import Call, Calls, StoreCore, coalesce, split
from sessions_app.store.errors import unavailable


def run_plans(store, plans) -> list[tuple[bool, Any]]:
    """(True, result) or (False, exception) for each plan, in order.

    A Redis outage during a pipeline raises StoreUnavailable for the whole batch.
    """
    if not (isinstance(store, StoreCore) and hasattr(store, "_do")):
        return [_run_one(store, plan) for plan in plans]  # a store without the request API
    outcomes: list[tuple[bool, Any] | None] = [None] * len(plans)
    deps = _dependencies(plans)
    states: dict[int, list] = {}  # index -> [generator, value to send, exception to throw]
    for index, plan in enumerate(plans):
        try:
            generator = getattr(StoreCore, plan.method)(store, *plan.args, **plan.kwargs)
        except Exception as exc:  # noqa: BLE001 - a bad argument is this plan's outcome
            outcomes[index] = (False, exc)
            continue
        states[index] = [generator, None, None]
    while states:
        calls: list[Call] = []
        sent: list[int] = []  # plans whose script call is in this step's pipeline
        for index, state in states.items():
            if any(outcomes[dep] is None for dep in deps[index]):
                continue  # not started yet: an earlier plan on its session must finish first
            step = _advance(store, state)
            if isinstance(step, tuple):
                outcomes[index] = step
            else:
                calls.append(step)
                sent.append(index)
        states = {index: state for index, state in states.items() if outcomes[index] is None}
        if calls:
            # A session's event writes in this step go out as one script call (coalesce).
            merged, groups = coalesce(calls)
            replies = _pipelined(store, merged)
            again: list[int] = []  # calls whose merged call refused: run one by one
            for group, reply in zip(groups, replies, strict=True):
                parts = split(reply, [calls[i] for i in group])
                if parts is None:
                    again += group
                    continue
                for i, part in zip(group, parts, strict=True):
                    states[sent[i]][1] = part
            if again:
                replies = _pipelined(store, [calls[i] for i in again])
                for i, reply in zip(again, replies, strict=True):
                    states[sent[i]][1] = reply
    return [outcome for outcome in outcomes if outcome is not None]  # all set: no state left


def _pipelined(store, calls: list[Call]) -> list:
    """The replies of these script calls, in one round trip (per Redis server)."""
    try:
        return store._do(Calls(calls))
    except redis.exceptions.RedisError as exc:
        mapped = unavailable(exc)
        if mapped is None:
            raise
        raise mapped from exc


def _dependencies(plans) -> list[list[int]]:
    """For each plan, the earlier plans that must finish before it starts."""
    deps: list[list[int]] = []
    since_barrier: dict[str, list[int]] = {}  # session -> plans since its last barrier
    last_barrier: dict[str, int] = {}
    for index, plan in enumerate(plans):
        session = plan.session
        if session is None:
            deps.append([])
            continue
        if plan.barrier:
            deps.append([*since_barrier.get(session, []), last_barrier.get(session, -1)])
            last_barrier[session] = index
            since_barrier[session] = []
        else:
            deps.append([last_barrier.get(session, -1)])
            since_barrier.setdefault(session, []).append(index)
        deps[-1] = [dep for dep in deps[-1] if dep >= 0]
    return deps


def _advance(store, state: list) -> Call | tuple[bool, Any]:
    """Run a generator until its next script call, or to its end: the Call or the outcome."""
    generator, send, throw = state
    while True:
        try:
            request = generator.throw(throw) if throw is not None else generator.send(send)
        except StopIteration as stop:
            return True, stop.value
        except Exception as exc:  # noqa: BLE001 - the store's answer for this operation
            return False, exc
        send = throw = None
        if type(request) is Call:
            state[1] = state[2] = None
            return request
        try:
            send = store._do(request)
        except redis.exceptions.RedisError as exc:
            throw = unavailable(exc) or exc
        except DatabaseError as exc:
            throw = exc


def _run_one(store, plan) -> tuple[bool, Any]:
    try:
        return True, getattr(store, plan.method)(*plan.args, **plan.kwargs)
    except Exception as exc:  # noqa: BLE001 - sorted out by the caller
        return False, exc
