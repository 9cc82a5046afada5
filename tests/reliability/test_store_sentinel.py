"""The live store under Sentinel with REDIS_WAIT_REPLICAS=1: the primary is killed while the
store takes writes. Every write the store acknowledged is in the session afterwards (on the new
primary); every other one was refused with StoreUnavailable (503)."""

from __future__ import annotations

import threading
import time

import pytest

from sessions_app.exceptions import StoreUnavailable
from sessions_app.store import QueryRecord, get_session_store
from tests.redis_topologies import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_store_writes_acknowledged_with_the_replica_wait_survive_a_failover(
    sentinel_group, settings
):
    settings.REDIS_WAIT_REPLICAS, settings.REDIS_WAIT_TIMEOUT_MS = 1, 300
    store = get_session_store()
    session = store.create_session(assets=["SPY"], ttl_hours=1)
    acked: list[str] = []
    refused: list[Exception] = []
    stop = threading.Event()

    def load():
        n = 0
        while not stop.is_set():
            n += 1
            try:
                store.add_query(session.id, QueryRecord(query_type="q"), event_id=f"e{n}")
                acked.append(f"e{n}")
            except StoreUnavailable as exc:
                refused.append(exc)
                time.sleep(0.05)
            except Exception as exc:
                refused.append(exc)
                time.sleep(0.05)

    writer = threading.Thread(target=load)
    writer.start()
    try:
        wait_until(lambda: len(acked) >= 30, 10, "writes before the failover")
        old = sentinel_group.primary
        old.kill()
        wait_until(lambda: sentinel_group.current_primary_port() != old.port, 30, "a new primary")
        old.restart()  # back as a replica: the replica wait can succeed again
        resumed = len(acked)
        wait_until(lambda: len(acked) >= resumed + 30, 30, "acknowledged writes again")
    finally:
        stop.set()
        writer.join(30)
    assert all(isinstance(exc, StoreUnavailable) for exc in refused), refused[:3]
    events, _ = store.get_timeline(session.id, 0, 500)
    stored = {event.event_id for event in events}
    lost = [event_id for event_id in acked if event_id not in stored]
    print(
        f"\n[sentinel store] {len(acked)} acknowledged add_query calls, {len(lost)} lost; "
        f"{len(refused)} refused with 503 during the failover"
    )
    assert lost == []
