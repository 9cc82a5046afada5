"""Live demo sessions, created through the store exactly as a client would create them."""

import random

from sessions_app.demo import catalogue as cat
from sessions_app.demo import content
from sessions_app.domain import QueryRecord
from sessions_app.policies import get_effective_policy
from sessions_app.store import get_session_store

_TYPES = list(cat.SESSION_TYPE_SHARES)
_TYPE_WEIGHTS = list(cat.SESSION_TYPE_SHARES.values())
_TOOLS = list(cat.TOOLS)


def seed_live_sessions(count: int, *, seed: int, user_count: int) -> dict:
    """Create `count` active sessions with a few queries, messages, tool calls and context each."""
    store = get_session_store()
    rng = random.Random(seed * 31 + 7)  # noqa: S311 - demo data
    names, weights = content.users(seed, user_count)
    totals = {"live_sessions": 0, "live_events": 0}
    for index in range(count):
        # Cycle through the types first so even a handful of live sessions shows each of them.
        if index < len(_TYPES):
            session_type = _TYPES[index]
        else:
            session_type = rng.choices(_TYPES, _TYPE_WEIGHTS)[0]
        assets = content.pick_assets(rng, session_type)
        source, device, ip = content.client(rng, session_type)
        policy = get_effective_policy(session_type)
        session = store.create_session(
            assets=assets,
            session_type=session_type,
            user_id=rng.choices(names, cum_weights=weights)[0],
            ttl_hours=min(rng.choice((24, 24, 8, 48)), policy.max_ttl_hours),
            tags=rng.sample(cat.TAGS[session_type], rng.randint(0, 2)),
            purpose=content.purpose(rng, session_type, assets),
            source=source,
            device=device,
            ip=ip,
            preferences=rng.choice(content.PREFERENCES),
            metadata=content.metadata(rng),
        )
        for name, value in content.context(rng, session_type, assets).items():
            store.update_context(session.id, name, value)
        events = rng.randint(2, 14)
        if session_type == "agent":
            _agent_turns(store, rng, session.id, assets, events)
        else:
            _queries(store, rng, session.id, session_type, assets, events)
        if rng.random() < 0.5:
            for name, value in content.intermediate_results(rng, session_type, assets).items():
                store.store_intermediate_result(session.id, name, value)
        totals["live_sessions"] += 1
        totals["live_events"] += store.get_session(session.id, recent_events=0).event_count
    return totals


def _query(rng: random.Random, symbol: str, query_type: str) -> QueryRecord:
    params, summary = rng.choice(content.query_variants(symbol, query_type))
    if rng.random() < 0.02:
        return QueryRecord(query_type, params, "", 5000.0, False, cat.QUERY_ERRORS[0])
    hit = rng.random() < cat.QUERY_CACHE_RATE[query_type]
    median = 2.7 if hit else cat.QUERY_MEDIAN_MS[query_type]
    elapsed = round(median * rng.lognormvariate(0, 0.55), 1)
    return QueryRecord(query_type, params, summary, elapsed, hit, "")


def _queries(store, rng, session_id, session_type, assets, events) -> None:
    b = assets[1] if len(assets) > 1 else content.benchmark(assets[0])
    for query_type in rng.choices(cat.QUERY_TYPES, cat.QUERY_MIX[session_type], k=events):
        if rng.random() < 0.12:
            role = rng.choice(("user", "assistant"))
            text = rng.choice(content.message_variants(assets[0], b, role))
            store.add_message(session_id, role=role, content=text)
        else:
            store.add_query(session_id, _query(rng, rng.choice(assets), query_type))


def _agent_turns(store, rng, session_id, assets, events) -> None:
    b = assets[1] if len(assets) > 1 else content.benchmark(assets[0])
    written = 0
    while written < events:
        prompt = rng.choice(content.message_variants(assets[0], b, "user"))
        store.add_message(session_id, role="user", content=prompt)
        written += 1
        for tool in rng.choices(_TOOLS, cat.TOOL_SHARES, k=rng.randint(1, 2)):
            (in_lo, in_hi), (out_lo, out_hi), (d_lo, d_hi) = cat.TOOLS[tool]
            invocation = f"call_{rng.getrandbits(48):012x}"
            tokens_in, tokens_out = rng.randint(in_lo, in_hi), rng.randint(out_lo, out_hi)
            micro_usd = (
                tokens_in * cat.MICRO_USD_PER_TOKEN_IN + tokens_out * cat.MICRO_USD_PER_TOKEN_OUT
            )
            store.record_tool_call(
                session_id,
                tool_name=tool,
                invocation_id=invocation,
                duration_ms=round(rng.uniform(d_lo, d_hi), 1),
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cost=micro_usd / 1_000_000,
            )
            query_type = content.TOOL_QUERY_TYPE.get(tool)
            if query_type:
                store.add_query(session_id, _query(rng, rng.choice(assets), query_type))
                written += 1
            result = content.tool_result(tool, assets[0])
            store.add_message(
                session_id, role="tool", content=result, tool_name=tool, invocation_id=invocation
            )
            written += 2
        reply = rng.choice(content.message_variants(assets[0], b, "assistant"))
        store.add_message(session_id, role="assistant", content=reply)
        written += 1
