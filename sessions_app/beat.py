"""Celery beat scheduler that records a heartbeat in Redis on every tick, for /healthz."""

import contextlib
import time

from django_celery_beat.schedulers import DatabaseScheduler

from sessions_app.redis_client import get_redis, key

BEAT_HEARTBEAT_KEY = "beat:last_tick"


class HeartbeatDatabaseScheduler(DatabaseScheduler):
    """django-celery-beat's DatabaseScheduler plus a `beat:last_tick` timestamp in Redis."""

    def tick(self, *args, **kwargs):
        # A Redis hiccup must never stop the scheduler.
        with contextlib.suppress(Exception):
            get_redis().set(key(BEAT_HEARTBEAT_KEY), time.time(), ex=3600)
        return super().tick(*args, **kwargs)
