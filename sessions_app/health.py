"""Health of Postgres, Redis, the Celery worker and beat: /healthz and the operations page."""

import time

from django.db import connection
from django.http import JsonResponse

from fimlsessions.celery import app as celery_app
from sessions_app.beat import BEAT_HEARTBEAT_KEY
from sessions_app.redis_client import get_redis, key

# Beat ticks at least every few seconds (django-celery-beat's max interval is 5 s).
BEAT_STALE_AFTER_SECONDS = 60


def check_postgres() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure means "down", reported as text
        return {"ok": False, "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}


def check_redis() -> dict:
    try:
        get_redis().ping()
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": str(exc) or type(exc).__name__}


def check_worker(timeout: float = 1.0) -> dict:
    try:
        replies = celery_app.control.ping(timeout=timeout, limit=1)
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": str(exc) or type(exc).__name__}
    if not replies:
        return {"ok": False, "error": f"no worker answered a ping within {timeout:g} s"}
    return {"ok": True, "workers": [name for reply in replies for name in reply]}


def check_beat() -> dict:
    try:
        last_tick = get_redis().get(key(BEAT_HEARTBEAT_KEY))
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": str(exc) or type(exc).__name__}
    if last_tick is None:
        return {"ok": False, "error": "beat has not ticked yet"}
    age = time.time() - float(last_tick)
    if age > BEAT_STALE_AFTER_SECONDS:
        return {"ok": False, "error": f"last tick {age:.0f} s ago", "last_tick_age_seconds": age}
    return {"ok": True, "last_tick_age_seconds": round(age, 1)}


def system_health() -> dict:
    """State of every part; `ok` only when all are up."""
    checks = {
        "postgres": check_postgres(),
        "redis": check_redis(),
        "worker": check_worker(),
        "beat": check_beat(),
    }
    return {"ok": all(check["ok"] for check in checks.values()), "checks": checks}


def healthz(request):
    """200 with every check when all parts are up, 503 otherwise."""
    health = system_health()
    return JsonResponse(health, status=200 if health["ok"] else 503)
