"""Health of Postgres, Redis, the Celery workers and beat: /healthz and the operations page.

Cheap on purpose (it is unauthenticated and polled): no Celery ping on a web thread. Workers
write a heartbeat to Redis (sessions_app.worker), beat one per tick (sessions_app.beat), and
the result is cached in the process for HEALTH_CACHE_SECONDS, so a flood of /healthz costs a
few Redis/Postgres round trips a second at most. Anonymous callers get up/down per part only;
hosts, errors and worker names are for staff.
"""

import threading
import time

from django.db import connection
from django.http import JsonResponse

from sessions_app.beat import BEAT_HEARTBEAT_KEY
from sessions_app.redis_client import get_redis, key

# Beat ticks at least every few seconds (django-celery-beat's max interval is 5 s).
BEAT_STALE_AFTER_SECONDS = 60
# Workers beat every WORKER_HEARTBEAT_SECONDS (sessions_app.worker); three missed = down.
WORKER_HEARTBEAT_SECONDS = 15
WORKER_STALE_AFTER_SECONDS = 3 * WORKER_HEARTBEAT_SECONDS + 5
WORKERS_KEY = "workers"  # hash: worker hostname -> time of its last heartbeat
HEALTH_CACHE_SECONDS = 2.0

_cached: tuple[float, dict] | None = None
_computing = threading.Lock()


def _error(exc: Exception) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def check_postgres() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure means "down", reported as text
        return {"ok": False, "error": _error(exc)}


def check_redis() -> dict:
    try:
        get_redis().ping()
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": _error(exc)}


def workers_key() -> str:
    return key(WORKERS_KEY)


def check_worker() -> dict:
    """Up when at least one worker wrote its heartbeat recently (no ping: no waiting)."""
    try:
        beats = get_redis().hgetall(workers_key())
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": _error(exc)}
    now = time.time()
    alive = sorted(
        name for name, at in beats.items() if now - float(at) < WORKER_STALE_AFTER_SECONDS
    )
    if not alive:
        return {"ok": False, "error": f"no worker heartbeat in {WORKER_STALE_AFTER_SECONDS} s"}
    return {"ok": True, "workers": alive}


def check_beat() -> dict:
    try:
        last_tick = get_redis().get(key(BEAT_HEARTBEAT_KEY))
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": _error(exc)}
    if last_tick is None:
        return {"ok": False, "error": "beat has not ticked yet"}
    age = time.time() - float(last_tick)
    if age > BEAT_STALE_AFTER_SECONDS:
        return {"ok": False, "error": f"last tick {age:.0f} s ago", "last_tick_age_seconds": age}
    return {"ok": True, "last_tick_age_seconds": round(age, 1)}


def _check_all() -> dict:
    checks = {
        "postgres": check_postgres(),
        "redis": check_redis(),
        "worker": check_worker(),
        "beat": check_beat(),
    }
    return {"ok": all(check["ok"] for check in checks.values()), "checks": checks}


def system_health(max_age: float = HEALTH_CACHE_SECONDS) -> dict:
    """State of every part (`ok` only when all are up), at most `max_age` seconds old. While
    one thread checks, others get the previous answer instead of checking too."""
    global _cached
    cached = _cached
    if cached is not None and time.monotonic() - cached[0] < max_age:
        return cached[1]
    if not _computing.acquire(blocking=cached is None):
        assert cached is not None  # only a non-blocking acquire can fail
        return cached[1]
    try:
        health = _check_all()
        _cached = (time.monotonic(), health)
        return health
    finally:
        _computing.release()


def public_view(health: dict) -> dict:
    """Only up/down per part: no hosts, ports, errors or worker names for anonymous callers."""
    return {
        "ok": health["ok"],
        "checks": {name: {"ok": check["ok"]} for name, check in health["checks"].items()},
    }


def healthz(request):
    """200 when all parts are up, 503 otherwise; details for staff only."""
    health = system_health()
    user = getattr(request, "user", None)
    body = health if user is not None and user.is_staff else public_view(health)
    return JsonResponse(body, status=200 if health["ok"] else 503)
