"""The session lifecycle in any order (hypothesis stateful testing): create, track, message,
context, extend, end, expire, archive and purge, against real Redis and Postgres.

Invariant after every step: each acknowledged event of a session is in exactly one place, the
live store (Redis) or the archive (Postgres), until the session is purged, then in neither.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest
from django.db import connection
from django.test import override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from sessions_app.archive.timeline import EVENT_ROWS
from sessions_app.exceptions import InvalidInput, InvalidTTL, SessionNotActive, SessionNotFound
from sessions_app.models import Session
from sessions_app.policies import clear_policy_cache, get_effective_policy
from sessions_app.redis_client import get_redis, key
from sessions_app.store import QueryRecord, get_session_store
from sessions_app.store import keys as skeys

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

HOUR = 3600.0
# "Expire" moves the archiver's clock this far past a session's expiry: far from the idle
# cutoff's edge whichever way it falls, so the model's prediction cannot be off by a second.
EXPIRE_MARGIN = 600.0
NOT_LIVE = (SessionNotFound, SessionNotActive)


def event_rows_of(ids: list[str]) -> list[dict]:
    """{session_id, n, last} of each archived session's timeline."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT session_id, count(*), max(seq) FROM {EVENT_ROWS} ev "
            "WHERE session_id = ANY(%s) GROUP BY session_id",
            [list(ids)],
        )
        return [{"session_id": r[0], "n": r[1], "last": r[2]} for r in cursor.fetchall()]


@dataclass
class Model:
    """What the test expects of one session."""

    created_at: float
    expires_at: float
    events: int = 0
    context: int = 0
    where: str = "redis"  # redis | postgres | purged
    status: str = "active"


class Lifecycle(RuleBasedStateMachine):
    sessions = Bundle("sessions")

    def __init__(self):
        super().__init__()
        # Each example gets its own key prefix: nothing of an earlier example is archived by
        # this one's cleanup runs.
        self.override = override_settings(SESSION_REDIS_PREFIX=f"st{uuid.uuid4().hex[:12]}")
        self.override.enable()
        clear_policy_cache()
        self.store = get_session_store()
        self.model: dict[str, Model] = {}
        policy = get_effective_policy("equity")
        self.max_ttl = policy.max_ttl_hours * HOUR
        self.idle = policy.idle_timeout_minutes * 60

    def teardown(self):
        client = get_redis()
        prefix = key("")
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        self.override.disable()

    # ---- rules ------------------------------------------------------------------------------

    @initialize(target=sessions)
    def first(self):
        return self._create(24)

    @rule(target=sessions, ttl_hours=st.sampled_from([1, 24]))
    def create(self, ttl_hours):
        return self._create(ttl_hours)

    def _create(self, ttl_hours: float) -> str:
        session = self.store.create_session(
            assets=["AAPL"], session_type="equity", user_id="prop", ttl_hours=ttl_hours
        )
        session_id = str(session.id)
        self.model[session_id] = Model(
            session.created_at.timestamp(), session.expires_at.timestamp()
        )
        return session_id

    def _writable(self, session_id: str) -> bool:
        return self.model[session_id].where == "redis"

    @rule(session_id=sessions, cache_hit=st.booleans())
    def track(self, session_id, cache_hit):
        query = QueryRecord(query_type="price", parameters={"s": "AAPL"}, cache_hit=cache_hit)
        if self._writable(session_id):
            seq = self.store.add_query(session_id, query)
            assert seq == self.model[session_id].events
            self.model[session_id].events += 1
        else:
            with pytest.raises(NOT_LIVE):
                self.store.add_query(session_id, query)

    @rule(session_id=sessions, content=st.text(min_size=1, max_size=40).filter(str.strip))
    def message(self, session_id, content):
        if "\x00" in content:  # refused, naming the field, and nothing is written
            with pytest.raises(InvalidInput, match="content"):
                self.store.add_message(session_id, role="user", content=content)
            return
        if self._writable(session_id):
            seq = self.store.add_message(session_id, role="user", content=content)
            assert seq == self.model[session_id].events
            self.model[session_id].events += 1
        else:
            with pytest.raises(NOT_LIVE):
                self.store.add_message(session_id, role="user", content=content)

    @rule(session_id=sessions, value=st.integers() | st.text(max_size=10) | st.none())
    def context(self, session_id, value):
        if isinstance(value, str) and "\x00" in value:  # Postgres could not archive it
            with pytest.raises(InvalidInput, match="value"):
                self.store.update_context(session_id, "k", value)
            return
        if self._writable(session_id):
            self.store.update_context(session_id, "k", value)
            self.model[session_id].context = 1
        else:
            with pytest.raises(NOT_LIVE):
                self.store.update_context(session_id, "k", value)

    @rule(session_id=sessions, hours=st.sampled_from([0.5, 30, 200]))
    def extend(self, session_id, hours):
        m = self.model[session_id]
        if not self._writable(session_id):
            with pytest.raises(NOT_LIVE):
                self.store.extend_session(session_id, hours=hours)
            return
        wanted = m.expires_at + hours * HOUR - m.created_at
        if wanted > self.max_ttl + 1:
            with pytest.raises(InvalidTTL):
                self.store.extend_session(session_id, hours=hours)
        else:
            m.expires_at = self.store.extend_session(session_id, hours=hours).timestamp()

    @rule(session_id=sessions, status=st.sampled_from(["completed", "failed", "abandoned"]))
    def end(self, session_id, status):
        if self._writable(session_id):
            session = self.store.end_session(session_id, status=status)
            assert not session.is_live and session.status == status
            self.model[session_id].where, self.model[session_id].status = "postgres", status
        else:
            with pytest.raises(NOT_LIVE):
                self.store.end_session(session_id, status=status)

    @rule(session_id=sessions)
    def expire(self, session_id):
        """The archiver runs just after this session's expiry (as if that much time passed)."""
        now = self.model[session_id].expires_at + EXPIRE_MARGIN
        expected = {}
        for other, m in self.model.items():
            if m.where != "redis":
                continue
            if m.expires_at <= now:
                expected[other] = "expired"
            elif time.time() <= now - self.idle:  # idle for longer than the idle timeout
                expected[other] = "abandoned"
        counts = self.store.cleanup_expired_sessions(now=now)
        assert counts["archived"] == len(expected), (counts, expected)
        for other, status in expected.items():
            self.model[other].where, self.model[other].status = "postgres", status

    @rule(session_id=sessions)
    def archive(self, session_id):
        archived = self.store.archive_session(session_id)
        assert archived == self._writable(session_id)
        if archived:
            self.model[session_id].where, self.model[session_id].status = "postgres", "expired"

    @rule(session_id=consumes(sessions))
    def purge(self, session_id):
        deleted = self.store.delete_session(session_id)
        assert deleted == (self.model[session_id].where != "purged")
        self.model[session_id].where = "purged"

    # ---- the invariant ----------------------------------------------------------------------

    @invariant()
    def every_event_in_exactly_one_place(self):
        if not self.model:
            return
        ids = list(self.model)
        client = get_redis()
        pipe = client.pipeline(transaction=False)
        for session_id in ids:
            pipe.exists(skeys.meta(session_id))
            pipe.llen(skeys.session_keys(session_id)[1])
            pipe.hlen(skeys.session_keys(session_id)[2])
        replies = pipe.execute()
        archived = {str(row["session_id"]): row for row in event_rows_of(ids)}
        rows = {
            str(row["id"]): row
            for row in Session.objects.filter(id__in=ids).values("id", "status", "context")
        }
        for i, session_id in enumerate(ids):
            m = self.model[session_id]
            in_redis, redis_events, redis_ctx = replies[3 * i : 3 * i + 3]
            pg = archived.get(session_id)
            if m.where == "redis":
                assert in_redis and redis_events == m.events and redis_ctx == m.context
                assert pg is None and session_id not in rows
            elif m.where == "postgres":
                assert not in_redis and redis_events == 0
                if m.events:
                    assert pg is not None and (pg["n"], pg["last"]) == (m.events, m.events - 1)
                else:
                    assert pg is None
                assert rows[session_id]["status"] == m.status
                assert len(rows[session_id]["context"]) == m.context
            else:
                assert not in_redis and redis_events == 0 and pg is None
                assert session_id not in rows


def test_lifecycle_in_any_order_keeps_every_event_in_exactly_one_place(capsys):
    started = time.monotonic()
    run_state_machine_as_test(
        Lifecycle,
        settings=settings(
            max_examples=30,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    with capsys.disabled():
        print(f"\n[stateful] 30 examples x up to 20 steps in {time.monotonic() - started:.1f} s")
