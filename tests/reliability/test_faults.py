"""Faults against real servers the tests start, stop and kill: Redis stopped mid-load, Redis
SIGKILLed and restarted from its append-only file, Postgres stopped, an archiving worker
SIGKILLed mid-batch, and two beats with two workers. Nothing acknowledged may be lost, nothing
archived twice."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict

import pytest
import redis
from celery import Celery
from django.db import connections
from django.urls import reverse

from sessions_app import apikeys
from sessions_app.archive.timeline import EVENT_ROWS
from sessions_app.exceptions import StoreUnavailable
from sessions_app.models import Session
from sessions_app.redis_client import get_redis, key
from sessions_app.store import QueryRecord, get_session_store
from sessions_app.store import keys as skeys
from tests.factories import archived_session, event_rows

from .conftest import PYTHON, wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# Redis' own bound on what SIGKILL can take with `appendfsync everysec`: the AOF is fsynced
# every second, and while a slow fsync runs Redis may hold back the write(2) of new commands for
# up to 2 s more. Writes acknowledged longer ago than this are on disk.
AOF_FSYNC_WINDOW_SECONDS = 2.0


# ---- helpers ----------------------------------------------------------------------------------


class Writer(threading.Thread):
    """Creates sessions and tracks events on them until stopped; records every acknowledgement
    (session id -> acknowledged seqs) and every failure with how long it took to fail."""

    def __init__(self, n: int, stop: threading.Event):
        super().__init__(name=f"writer-{n}", daemon=True)
        self.n = n
        self.stop_event = stop
        self.acked: dict[str, list[int]] = {}
        self.failures: list[tuple[str, float]] = []  # (exception class, seconds to fail)
        self.unexpected: list[BaseException] = []

    def run(self):
        store = get_session_store()
        session_id = None
        try:
            while not self.stop_event.is_set():
                started = time.perf_counter()
                try:
                    if session_id is None or len(self.acked[session_id]) >= 20:
                        session = store.create_session(
                            assets=["AAPL"], session_type="equity", user_id=f"load-{self.n}"
                        )
                        session_id = str(session.id)
                        self.acked[session_id] = []
                    else:
                        seq = store.add_query(
                            session_id, QueryRecord(query_type="price", parameters={"n": self.n})
                        )
                        self.acked[session_id].append(seq)
                except StoreUnavailable:
                    self.failures.append(("StoreUnavailable", time.perf_counter() - started))
                    time.sleep(0.01)
                except Exception as exc:  # anything else is a bug the test reports
                    self.unexpected.append(exc)
                    return
        finally:
            connections.close_all()  # the policy cache may have opened one in this thread

    @property
    def ack_count(self) -> int:
        return sum(len(seqs) + 1 for seqs in self.acked.values())


def redis_session_keys(client: redis.Redis) -> list[str]:
    return list(client.scan_iter(match=key("*", "s", "*"), count=1000))


def assert_archived_exactly(expected: dict[str, int]) -> None:
    """Each session in Postgres once with exactly `expected[id]` events, seqs 0..n-1."""
    rows = dict(Session.objects.filter(id__in=list(expected)).values_list("id", "query_count"))
    assert len(rows) == len(expected), f"{len(expected) - len(rows)} sessions missing"
    per_session = defaultdict(list)
    for row in event_rows():
        if row.session_id in expected:
            per_session[row.session_id].append(row.seq)
    for session_id, count in expected.items():
        assert sorted(per_session[session_id]) == list(range(count)), session_id


# ---- Redis stopped mid-load -------------------------------------------------------------------


def test_redis_stopped_mid_load_fails_fast_keeps_history_and_loses_no_acknowledged_write(
    own_redis, analyst_client, capsys
):
    history = archived_session(purpose="Archived before the outage", user_id="hist-user")
    _, secret = apikeys.create_api_key("writer", ["read", "write"])
    auth = {"Authorization": f"Bearer {secret}"}
    store = get_session_store()

    stop = threading.Event()
    writers = [Writer(n, stop) for n in range(4)]
    for writer in writers:
        writer.start()
    wait_for(lambda: sum(w.ack_count for w in writers) >= 300, 30, "300 acknowledged writes")
    own_redis.stop()  # SHUTDOWN: Redis fsyncs its append-only file and exits
    stopped_at = time.monotonic()
    wait_for(lambda: all(len(w.failures) >= 3 for w in writers), 30, "writes to fail")
    stop.set()
    for writer in writers:
        writer.join(30)
    assert not any(w.unexpected for w in writers), [w.unexpected for w in writers]

    # Writes fail with StoreUnavailable, and fast: a refused connection, not a hang.
    fail_times = [seconds for w in writers for _, seconds in w.failures]
    assert {name for w in writers for name, _ in w.failures} == {"StoreUnavailable"}
    with pytest.raises(StoreUnavailable, match="unavailable"):
        store.add_query(next(iter(writers[0].acked)), QueryRecord(query_type="price"))

    # Through the REST API: 503 with a clear message, and a Retry-After.
    response = analyst_client.post(
        "/api/v1/sessions",
        {"session_type": "equity"},
        content_type="application/json",
        headers=auth,
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert "unavailable" in response.json()["error"]["reason"]
    assert response["Retry-After"]
    some_session = next(iter(writers[1].acked))
    response = analyst_client.post(
        f"/api/v1/sessions/{some_session}/queries",
        {"query_type": "price"},
        content_type="application/json",
        headers=auth,
    )
    assert response.status_code == 503

    # The dashboard keeps serving history from Postgres and says live data is unavailable.
    pages = {
        "overview": reverse("dashboard:overview"),
        "history": reverse("dashboard:history"),
        "live": reverse("dashboard:live"),
        "detail": reverse("dashboard:session", args=[history.id]),
        "user": reverse("dashboard:user", args=["hist-user"]),
    }
    for name, url in pages.items():
        response = analyst_client.get(url)
        assert response.status_code == 200, name
        if name in ("history", "detail", "user"):
            assert b"Archived before the outage" in response.content, name
        if name in ("overview", "live", "user"):
            assert b"Live data unavailable" in response.content, name

    # Back up from its append-only file: every acknowledged write is there.
    own_redis.restart()
    down_seconds = time.monotonic() - stopped_at
    expected: dict[str, int] = {}
    for writer in writers:
        for session_id, seqs in writer.acked.items():
            events, total = store.get_timeline(session_id, offset=0, limit=500)
            assert [e.seq for e in events][: len(seqs)] == seqs == list(range(len(seqs)))
            # A write in flight at the stop may have landed without its acknowledgement.
            assert total in (len(seqs), len(seqs) + 1), session_id
            expected[session_id] = total

    # ... and archives, each event exactly once.
    counts = store.cleanup_expired_sessions(now=time.time() + 48 * 3600)
    # Plus at most one session per writer whose create landed unacknowledged at the stop.
    assert len(expected) <= counts["archived"] <= len(expected) + len(writers)
    assert_archived_exactly(expected)
    assert redis_session_keys(get_redis()) == []
    with capsys.disabled():
        print(
            f"\n[redis stop] acknowledged {sum(w.ack_count for w in writers)} writes in "
            f"{len(expected)} sessions before the stop; {len(fail_times)} writes failed while "
            f"down (slowest {max(fail_times) * 1000:.1f} ms, median "
            f"{sorted(fail_times)[len(fail_times) // 2] * 1000:.1f} ms); down {down_seconds:.1f} s;"
            f" archived {counts['archived']} sessions, {sum(expected.values())} events"
        )


# ---- Redis SIGKILL ----------------------------------------------------------------------------


def test_redis_sigkill_keeps_writes_acknowledged_before_the_fsync_window(own_redis, capsys):
    """Redis runs with `appendonly yes` and `appendfsync everysec`. The documented window: a
    SIGKILL (or power loss) can lose writes acknowledged within the last second, up to 2 s
    when an fsync is slow (AOF_FSYNC_WINDOW_SECONDS). The test waits longer than that after the
    last acknowledgement, kills Redis with SIGKILL, restarts it from its append-only file and
    checks that every acknowledged session and event is there and archives."""
    store = get_session_store()
    expected: dict[str, int] = {}
    for i in range(25):
        session = store.create_session(
            assets=["BTC-USD"], session_type="crypto", user_id=f"aof-{i % 3}", tags=["aof"]
        )
        for n in range(8):
            if n % 2:
                store.add_message(session.id, role="assistant", content=f"answer {n}")
            else:
                store.add_query(session.id, QueryRecord(query_type="quote", cache_hit=n == 2))
        store.update_context(session.id, "risk", {"level": i})
        expected[str(session.id)] = 8
    time.sleep(AOF_FSYNC_WINDOW_SECONDS + 0.2)

    own_redis.kill()
    started = time.monotonic()
    own_redis.restart()
    restart_seconds = time.monotonic() - started

    for session_id, count in expected.items():
        session = store.get_session(session_id, recent_events=50)
        assert session is not None and session.is_live, session_id
        assert session.event_count == count
        assert [e.seq for e in session.recent_events] == list(range(count))
        assert session.state.context["risk"]["level"] >= 0
    assert store.live_counts()["by_type"]["crypto"] == len(expected)

    counts = store.cleanup_expired_sessions(now=time.time() + 48 * 3600)
    assert counts["archived"] == len(expected)
    assert_archived_exactly(expected)
    assert Session.objects.filter(id__in=list(expected), context__risk__level__gte=0).count() == 25
    with capsys.disabled():
        print(
            f"\n[redis SIGKILL] {len(expected)} sessions / {sum(expected.values())} events "
            f"survived; restart from the AOF took {restart_seconds * 1000:.0f} ms"
        )


# ---- Postgres stopped -------------------------------------------------------------------------


def send_cleanup(broker_url: str) -> None:
    """What beat does each slot: queue the cleanup task on the broker."""
    app = Celery("reliability-beat", broker=broker_url, set_as_current=False)
    try:
        app.send_task("sessions_app.tasks.cleanup_expired_sessions")
    finally:
        app.close()


def start_worker(procs, name: str):
    return procs.start(
        name,
        [PYTHON, "-m", "celery", "-A", "fimlsessions", "worker", "--pool=solo",
         "--loglevel=INFO", f"--hostname={name}@%h", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
    )  # fmt: skip


def test_postgres_stopped_live_writes_work_archive_fails_then_catches_up_exactly_once(
    own_postgres, tmp_path, redis_prefix, make_procs, capsys
):
    """A real Celery worker runs the cleanup task (the test queues it, as beat would) while
    Postgres is down: the runs fail and are recorded as failed JobRuns once Postgres is back;
    the next run archives every due session, each once."""
    from fimlsessions import embedded

    rd = embedded.start_redis(tmp_path / "redis")
    try:
        procs = make_procs(own_postgres.url, rd.url, redis_prefix)
        client = redis.Redis.from_url(rd.url, decode_responses=True)
        start_worker(procs, "pgworker")
        wait_for(lambda: "ready" in procs.log("pgworker"), 60, "the worker to start")

        # Sessions written while Postgres is up, due in a few seconds.
        before = procs.script("seed", 10, 6, 4)["sessions"]
        own_postgres.stop()
        stopped_at = time.monotonic()

        # Postgres down: live writes still work (create, track, context; every 2nd ended).
        during = procs.script("seed", 10, 6, 4, 2)["sessions"]
        everything = {**before, **during}
        assert len(everything) == 20

        # The archive job keeps being queued and fails; the sessions stay in Redis.
        time.sleep(4.2)  # every session is due now (TTL 4 s)
        marker = "could not record its run"
        for attempt in (1, 2):
            send_cleanup(rd.url)
            wait_for(
                lambda n=attempt: procs.log("pgworker").count(marker) >= n,
                30,
                f"failed cleanup run {attempt}",
            )
        live = [k for k in client.scan_iter(match=f"{redis_prefix}:*:s:*") if k.count(":") == 3]
        assert sorted(k.rsplit(":", 1)[1] for k in live) == sorted(everything)

        own_postgres.start()
        down_seconds = time.monotonic() - stopped_at
        send_cleanup(rd.url)
        wait_for(
            lambda: own_postgres.scalar(
                "SELECT count(*) FROM sessions_app_jobrun WHERE outcome = 'success'"
            ),
            30,
            "a successful cleanup run",
        )
        runs = own_postgres.query(
            "SELECT outcome, counts, error FROM sessions_app_jobrun ORDER BY started_at"
        )
        failed = [run for run in runs if run[0] == "failed"]
        succeeded = [run for run in runs if run[0] == "success"]
        assert len(failed) == 2, runs
        assert all("OperationalError" in run[2] for run in failed)
        assert len(succeeded) == 1
        assert succeeded[0][1]["archived"] == 20
        assert succeeded[0][1]["failed"] == 0

        # Exactly once: every session once, every acknowledged event once; Redis emptied.
        rows = own_postgres.query(
            "SELECT s.id::text, count(e.seq), count(DISTINCT e.seq), min(e.seq), max(e.seq) "
            f"FROM sessions_app_session s LEFT JOIN {EVENT_ROWS} e "
            "ON e.session_id = s.id GROUP BY s.id"
        )
        assert {row[0]: row[1] for row in rows} == everything
        assert all(row[1] == row[2] == row[4] + 1 and row[3] == 0 for row in rows)
        statuses = dict(own_postgres.query("SELECT id::text, status FROM sessions_app_session"))
        assert sum(status == "completed" for status in statuses.values()) == 5
        assert list(client.scan_iter(match=f"{redis_prefix}:*:s:*")) == []
        with capsys.disabled():
            print(
                f"\n[postgres stop] 10 sessions written while Postgres was down; "
                f"{len(failed)} failed cleanup runs recorded; after {down_seconds:.1f} s down "
                f"one run archived {succeeded[0][1]['archived']} sessions / "
                f"{sum(everything.values())} events, none twice"
            )
    finally:
        rd.stop()


# ---- worker SIGKILL mid-batch -----------------------------------------------------------------


def test_worker_killed_mid_archive_batch_next_run_completes_each_session_once(
    own_redis, own_postgres, redis_prefix, make_procs, capsys
):
    """The archiving process is SIGKILLed right after a batch committed to Postgres and before
    it deleted that batch from Redis (the session is then in both). Lock TTL and claim lease
    are shortened to 3 s for the test (production: 60 s and 300 s)."""
    procs = make_procs(
        own_postgres.url,
        own_redis.url,
        redis_prefix,
        CLAIM_LEASE_SECONDS="3",
        JOB_LOCK_TTL_SECONDS="3",
    )
    store = get_session_store()
    expected = {}
    for i in range(300):
        session = store.create_session(assets=["ETH-USD"], session_type="crypto", user_id=f"k{i}")
        for n in range(4):
            store.add_query(session.id, QueryRecord(query_type="ohlc", parameters={"n": n}))
        store.end_session(session.id, archive=False)  # due now, archived by the cleanup run
        expected[str(session.id)] = 4

    crashing = procs.start_script("crash", "archive_crash", 25, 3)
    line = wait_for(
        lambda: next(
            (x for x in procs.log("crash").splitlines() if x.startswith("COMMITTED ")), None
        ),
        60,
        "the third batch to commit",
    )
    procs.kill(crashing)  # SIGKILL, between the Postgres commit and the Redis delete
    assert crashing.returncode == -9
    batches = json.loads(line.removeprefix("COMMITTED "))
    in_both = batches[-1]
    assert len(in_both) == 25
    archived_first = {session_id for batch in batches for session_id in batch}
    assert own_postgres.scalar("SELECT count(*) FROM sessions_app_session") == 75
    client = get_redis()
    assert all(client.exists(skeys.meta(session_id)) for session_id in in_both)
    first_archived_at = dict(
        own_postgres.query(
            "SELECT id::text, archived_at FROM sessions_app_session WHERE id = ANY(%s::text[])",
            (in_both,),
        )
    )

    # The dead run's lock and claims lapse (3 s here); the next run completes the work.
    wait_for(lambda: not client.exists(key("lock", "cleanup_expired_sessions")), 30, "lock")
    time.sleep(3.1)  # the claim lease of the dead run's prefetched batch
    result = procs.script("archive", 1000)
    assert result["outcome"] == "success", result
    assert result["counts"]["archived"] == 300 - len(archived_first) + len(in_both)

    rows = own_postgres.query(
        "SELECT s.id::text, count(e.seq), count(DISTINCT e.seq) FROM sessions_app_session s "
        f"LEFT JOIN {EVENT_ROWS} e ON e.session_id = s.id GROUP BY s.id"
    )
    assert {row[0]: row[1] for row in rows} == expected
    assert all(row[1] == row[2] for row in rows)
    # The batch archived twice kept its first archive time: one archive, finished by the next.
    again = dict(
        own_postgres.query(
            "SELECT id::text, archived_at FROM sessions_app_session WHERE id = ANY(%s::text[])",
            (in_both,),
        )
    )
    assert again == first_archived_at
    assert redis_session_keys(client) == []
    runs = own_postgres.query("SELECT outcome, error FROM sessions_app_jobrun ORDER BY started_at")
    assert [run[0] for run in runs] == ["failed", "success"]
    assert "stopped without finishing" in runs[0][1]
    with capsys.disabled():
        print(
            f"\n[worker SIGKILL] killed after 3 of 12 batches (75 sessions committed, 25 of them "
            f"still in Redis); the next run archived {result['counts']['archived']}; "
            f"300 sessions / 1200 events in Postgres, none twice"
        )


# ---- two beats, two workers -------------------------------------------------------------------


def test_two_beats_and_two_workers_do_each_job_once_per_slot(
    own_redis, own_postgres, redis_prefix, make_procs, tmp_path, capsys
):
    """Real `celery beat` and `celery worker` processes, two of each, with the cleanup and
    metrics jobs scheduled every 2 s: both beats queue every slot, so each slot's task runs
    twice, and the job lock must make the work happen once."""
    procs = make_procs(own_postgres.url, own_redis.url, redis_prefix)
    procs.script("schedule", 2)
    celery = [PYTHON, "-m", "celery", "-A", "fimlsessions"]
    for n in (1, 2):
        procs.start(
            f"worker{n}",
            [*celery, "worker", "--pool=solo", "--loglevel=INFO", f"--hostname=w{n}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
        )  # fmt: skip
        procs.start(
            f"beat{n}",
            [*celery, "beat", "--loglevel=INFO", "--pidfile=", f"-s={tmp_path}/beat{n}"],
        )

    started = time.monotonic()
    for n in (1, 2):
        wait_for(lambda n=n: "ready" in procs.log(f"worker{n}"), 60, f"worker{n} to start")
        wait_for(lambda n=n: "Sending due task" in procs.log(f"beat{n}"), 60, f"beat{n} to tick")
    startup = time.monotonic() - started

    # Sessions become due in waves while the beats tick.
    store = get_session_store()
    expected = {}
    for wave in range(5):
        for i in range(30):
            session = store.create_session(session_type="macro", user_id=f"w{wave}-{i}")
            store.add_message(session.id, role="user", content=f"wave {wave}")
            store.add_query(session.id, QueryRecord(query_type="rates"))
            store.end_session(session.id, archive=False)
            expected[str(session.id)] = 2
        time.sleep(1.0)

    client = get_redis()
    wait_for(lambda: not redis_session_keys(client), 60, "every session to be archived")
    for n in (1, 2):
        wait_for(lambda n=n: "received" in procs.log(f"worker{n}"), 30, f"worker{n} to get a task")
        wait_for(
            lambda n=n: procs.log(f"beat{n}").count("Sending due task") >= 4, 30, f"beat{n} ticks"
        )
    for proc in procs.started:
        procs.stop(proc)

    rows = own_postgres.query(
        "SELECT s.id::text, count(e.seq), count(DISTINCT e.seq) FROM sessions_app_session s "
        f"LEFT JOIN {EVENT_ROWS} e ON e.session_id = s.id GROUP BY s.id"
    )
    assert {row[0]: row[1] for row in rows} == expected
    runs = own_postgres.query(
        "SELECT job, outcome, counts, started_at, finished_at FROM sessions_app_jobrun "
        "ORDER BY started_at"
    )
    assert {run[1] for run in runs} <= {"success", "skipped"}, runs
    cleanups = [run for run in runs if run[0] == "cleanup_expired_sessions"]
    metrics = [run for run in runs if run[0] == "generate_session_metrics"]
    # The work was done once: every session archived by exactly one run.
    assert sum(run[2].get("archived", 0) for run in cleanups if run[1] == "success") == 150
    # And no two runs of one job ever overlapped: the lock serialised them.
    for job_runs in (cleanups, metrics):
        done = [run for run in job_runs if run[1] == "success"]
        assert done
        for earlier, later in itertools.pairwise(done):
            assert later[3] >= earlier[4], (earlier, later)
    sent = sum(procs.log(f"beat{n}").count("Sending due task") for n in (1, 2))
    with capsys.disabled():
        print(
            f"\n[2 beats + 2 workers] beats queued {sent} tasks; cleanup runs: "
            f"{sum(r[1] == 'success' for r in cleanups)} success "
            f"({sum(1 for r in cleanups if r[1] == 'success' and r[2].get('archived'))} did "
            f"work), {sum(r[1] == 'skipped' for r in cleanups)} skipped; metrics runs: "
            f"{sum(r[1] == 'success' for r in metrics)} success, "
            f"{sum(r[1] == 'skipped' for r in metrics)} skipped; 150 sessions archived once; "
            f"processes took {startup:.1f} s to come up"
        )
