"""What every Celery worker does besides tasks: a heartbeat for /healthz, and archiving when
beat has gone silent.

A watch thread (started on `worker_ready`, fimlsessions/celery.py) writes the worker's
heartbeat every WORKER_HEARTBEAT_SECONDS. If beat has not ticked for longer than the cleanup
interval, the first worker to notice (one claim per interval in Redis) runs the cleanup job
itself, under the job's lock and lease like any run, so live sessions are archived with beat
down too.
"""

import contextlib
import logging
import threading
import time

from sessions_app import health
from sessions_app.beat import BEAT_HEARTBEAT_KEY
from sessions_app.redis_client import get_redis, key

logger = logging.getLogger(__name__)


def heartbeat(hostname: str) -> None:
    get_redis().hset(health.workers_key(), hostname, time.time())


def forget(hostname: str) -> None:
    get_redis().hdel(health.workers_key(), hostname)


def self_check(worker_started: float) -> dict | None:
    """Run the cleanup job when beat has been silent longer than the cleanup interval (and no
    other worker claimed this interval); its summary, or None when nothing was needed."""
    from sessions_app.jobs import run_named_job
    from sessions_app.policies import all_effective_policies

    # The cleanup interval is a global setting: every type's effective policy carries it.
    interval = next(iter(all_effective_policies().values())).cleanup_interval_minutes * 60
    client = get_redis()
    last_tick = client.get(key(BEAT_HEARTBEAT_KEY))
    silent_since = float(last_tick) if last_tick else worker_started
    if time.time() - silent_since <= interval:
        return None
    if not client.set(key("selfcheck", "cleanup"), time.time(), nx=True, ex=interval):
        return None  # another worker took this interval's run
    logger.warning("beat silent for over %s s: this worker runs the cleanup job", interval)
    return run_named_job("cleanup")


class Watch(threading.Thread):
    """The worker's heartbeat and beat self-check, until the worker stops."""

    def __init__(self, hostname: str):
        super().__init__(name="fiml-worker-watch", daemon=True)
        self.hostname = hostname
        self.started_at = time.time()
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                heartbeat(self.hostname)
                self_check(self.started_at)
            except Exception:
                logger.warning("worker watch: check failed", exc_info=True)
            finally:
                from django.db import connection

                connection.close()  # this thread's own connection, not kept between checks
            if self.stopped.wait(health.WORKER_HEARTBEAT_SECONDS):
                return

    def stop(self) -> None:
        self.stopped.set()
        # Best effort: a heartbeat left behind goes stale by itself.
        with contextlib.suppress(Exception):
            forget(self.hostname)
