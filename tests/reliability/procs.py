"""App-side scripts the reliability tests run as subprocesses (`python -m tests.reliability.procs
COMMAND ARGS`), against the servers named by DATABASE_URL / REDIS_URL / SESSION_REDIS_PREFIX.

Each prints one JSON line last: what it did, so the test can check it against the databases.
"""

from __future__ import annotations

import json
import os
import sys
import time

import django


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fimlsessions.settings")
    django.setup()


def _out(data) -> None:
    print(json.dumps(data, default=str), flush=True)


def write_session(store, n_events: int, ttl_hours: float, end: bool, user: str) -> tuple[str, int]:
    """One session with `n_events` acknowledged events (queries, messages, tool calls) and a
    context key; ended (as completed) when `end`. Returns (id, acknowledged events)."""
    from sessions_app.domain import QueryRecord

    session = store.create_session(
        assets=["AAPL", "MSFT"], session_type="equity", user_id=user, ttl_hours=ttl_hours
    )
    acked = 0
    for i in range(n_events):
        if i % 3 == 0:
            seq = store.add_query(
                session.id,
                QueryRecord(query_type="price", parameters={"i": i}, execution_time_ms=1.5),
            )
        elif i % 3 == 1:
            seq = store.add_message(session.id, role="user", content=f"message {i}")
        else:
            seq = store.record_tool_call(session.id, tool_name="quote", tokens_in=3, cost=0.01)
        assert seq == acked, (seq, acked)
        acked += 1
    store.update_context(session.id, "step", n_events)
    if end:
        store.end_session(session.id, status="completed")
    return str(session.id), acked


def seed(n: str, n_events: str, ttl_seconds: str, end_every: str = "0", user: str = "u") -> None:
    """Create sessions; every `end_every`-th is ended (0: none). Prints {id: events}."""
    _setup()
    from sessions_app.store import get_session_store

    store = get_session_store()
    every = int(end_every)
    sessions = {}
    started = time.perf_counter()
    for i in range(int(n)):
        end = bool(every) and i % every == 0
        session_id, acked = write_session(
            store, int(n_events), float(ttl_seconds) / 3600, end, user
        )
        sessions[session_id] = acked
    _out({"sessions": sessions, "seconds": time.perf_counter() - started})


def _run_cleanup(**kwargs) -> dict:
    """One cleanup run under its job lock, as the Celery task does. CLAIM_LEASE_SECONDS and
    JOB_LOCK_TTL_SECONDS in the environment shorten the claim lease and lock TTL, so a test
    need not wait minutes for a killed run's claims and lock to lapse."""
    from sessions_app import archive as archiver
    from sessions_app import jobs

    if os.environ.get("CLAIM_LEASE_SECONDS"):
        archiver.CLAIM_LEASE_SECONDS = float(os.environ["CLAIM_LEASE_SECONDS"])
    ttl = float(os.environ.get("JOB_LOCK_TTL_SECONDS") or jobs.DEFAULT_LOCK_TTL_SECONDS)
    run = jobs.run_job(jobs.CLEANUP, archiver.archive_due_sessions, lock_ttl_seconds=ttl, **kwargs)
    return {"outcome": run.outcome, "counts": run.counts, "error": run.error}


def archive(batch_size: str = "1000", now_offset: str = "0") -> None:
    """One cleanup run; prints its JobRun outcome and counts."""
    _setup()
    now = time.time() + float(now_offset)
    _out(_run_cleanup(batch_size=int(batch_size), now=now))


def archive_crash(batch_size: str, crash_after: str) -> None:
    """A cleanup run that stops dead after committing batch `crash_after` to Postgres, before
    deleting those sessions from Redis: prints COMMITTED and the batches' ids, then waits for
    the test's SIGKILL (the worst moment for a worker to die)."""
    _setup()
    from sessions_app import archive as archiver

    forget = archiver._forget
    batches = []

    def forget_then_hang(client, snapshots):
        batches.append([snapshot[0] for snapshot in snapshots])
        if len(batches) == int(crash_after):
            print("COMMITTED " + json.dumps(batches), flush=True)
            time.sleep(120)
        return forget(client, snapshots)

    archiver._forget = forget_then_hang
    _out(_run_cleanup(batch_size=int(batch_size)))


def create_key(*scopes: str) -> None:
    _setup()
    from sessions_app import apikeys

    _, secret = apikeys.create_api_key("reliability", list(scopes) or ["read", "write"])
    _out({"key": secret})


def schedule(every_seconds: str) -> None:
    """Only the cleanup and metrics tasks scheduled, every `every_seconds` (beat's rows)."""
    _setup()
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from sessions_app import schedules

    PeriodicTask.objects.all().delete()
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=int(every_seconds), period=IntervalSchedule.SECONDS
    )
    for name, task in (
        (schedules.CLEANUP_TASK_NAME, schedules.CLEANUP_TASK),
        (schedules.METRICS_TASK_NAME, schedules.METRICS_TASK),
    ):
        PeriodicTask.objects.create(name=name, task=task, interval=interval)
    _out({"every": int(every_seconds)})


COMMANDS = {
    "seed": seed,
    "archive": archive,
    "archive_crash": archive_crash,
    "create_key": create_key,
    "schedule": schedule,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
