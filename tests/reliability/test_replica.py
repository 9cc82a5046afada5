"""A real streaming PostgreSQL replica (PostgreSQL's own binaries, from pgserver, on free
loopback ports): with DATABASE_REPLICA_URL set, the history/analytics selectors read from the
replica, while reads that must see a write just made use the primary.

Proof without timing: replay on the replica is paused, a session is archived on the primary,
and the selectors do not see it yet while the primary read does.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess

import psycopg
import pytest

from fimlsessions import embedded

from .conftest import PYTHON, REPO, app_env, wait_for

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys, uuid
import django
django.setup()
from tests.factories import archived_session
from sessions_app import analytics, history
from sessions_app.models import Session
from sessions_app.replica import replica_reads
if sys.argv[1] == "archive":
    archived_session(user_id="replica-user", queries=[{}])
    print(json.dumps({"done": True}))
else:
    page = history.search_sessions(history.HistoryFilters(user="replica-user"))
    with replica_reads():  # the raw-SQL path the analytics selectors take
        raw = analytics._fetch_one(
            "SELECT count(*) FROM sessions_app_session WHERE user_id = 'replica-user'", {}
        )[0]
    print(json.dumps({
        "history": page.count,
        "raw": raw,
        "export": len(list(history.export_rows(history.HistoryFilters(user="replica-user")))),
        "primary": Session.objects.filter(user_id="replica-user").count(),
    }))
"""


@pytest.fixture
def streaming_replica(own_postgres, tmp_path):
    """A hot standby of own_postgres, streaming from it."""
    data_dir = tmp_path / "replica"
    data_dir.mkdir(mode=0o700)
    account = embedded._pg_account()
    if account:
        os.chown(data_dir, *account)
    kwargs = {"user": account[0], "group": account[1], "extra_groups": []} if account else {}
    result = subprocess.run(
        [str(embedded._pg_bindir() / "pg_basebackup"), "-h", "127.0.0.1",
         "-p", str(own_postgres.handle.port), "-U", "postgres", "-D", str(data_dir),
         "-R", "-X", "stream", "-c", "fast"],
        capture_output=True, text=True, cwd="/", timeout=120, **kwargs,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    replica = embedded.start_postgres(data_dir)
    try:
        yield replica
    finally:
        with contextlib.suppress(embedded.EmbeddedServiceError):
            replica.stop(timeout=10)


def test_selectors_read_the_replica_and_fresh_reads_the_primary(own_postgres, streaming_replica):
    env = app_env(
        own_postgres.url,
        "redis://127.0.0.1:1/0",
        "replica-test",
        DATABASE_REPLICA_URL=streaming_replica.url,
    )

    def run(command: str) -> dict:
        result = subprocess.run(
            [PYTHON, "-c", SCRIPT, command], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    def on_replica(sql: str):
        with psycopg.connect(streaming_replica.url, autocommit=True) as conn:
            return conn.execute(sql).fetchone()[0]

    assert on_replica("SELECT pg_is_in_recovery()") is True
    run("archive")
    count = "SELECT count(*) FROM sessions_app_session WHERE user_id = 'replica-user'"
    wait_for(lambda: on_replica(count) == 1, 30, "the replica to catch up")
    assert run("read") == {"history": 1, "raw": 1, "export": 1, "primary": 1}

    on_replica("SELECT pg_wal_replay_pause()")
    run("archive")
    # The selectors answer from the replica (one session); the primary already has two.
    assert run("read") == {"history": 1, "raw": 1, "export": 1, "primary": 2}
    on_replica("SELECT pg_wal_replay_resume()")
    wait_for(lambda: on_replica(count) == 2, 30, "the replica to replay")
    assert run("read")["history"] == 2
