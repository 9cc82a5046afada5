"""The benchmark behind `manage.py bench`: runs the chosen sections, then cleans up after itself.

Everything the run creates lives under its own Redis key prefixes (`bench-<run id>-<section>`),
and in Postgres under user ids starting with `bench<run id>-`; both are deleted at the end, so the
benchmark can run against the development database.
"""

from __future__ import annotations

import logging
import platform
import secrets
import subprocess
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import django
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from sessions_app.benchmark import alerts, jobs, report, store_ops, web
from sessions_app.benchmark.core import (
    SECTIONS,
    BenchConfig,
    RunContext,
    SectionResult,
    Unavailable,
)

__all__ = ["SECTIONS", "BenchConfig", "run_benchmark"]

logger = logging.getLogger(__name__)

RUNNERS = {
    "floor": store_ops.run_floor,
    "store": store_ops.run_store,
    "archive": jobs.run_archive,
    "retention": jobs.run_retention,
    "dashboard": web.run_dashboard,
    "alerts": alerts.run_alerts,
    "metrics": jobs.run_metrics,
    "api": web.run_api,
}
# Sections that write live sessions do so under the run's own key prefix.
PREFIXED = {"store", "archive", "api"}


def run_benchmark(config: BenchConfig, log: Callable[[str], None] = logger.info) -> dict:
    """Run the configured sections; write results.json and results.md; return the JSON data."""
    run_id = secrets.token_hex(3)
    ctx = RunContext(config=config, prefix=f"bench-{run_id}", run_id=run_id)
    started = datetime.now(UTC)
    sections: list[SectionResult] = []
    # The floor runs whatever was asked: every ratio is taken against it.
    wanted = ["floor", *(name for name in SECTIONS if name in config.sections and name != "floor")]
    try:
        for name in wanted:
            sections.append(_run_section(ctx, name, log))
    finally:
        _cleanup(ctx, sections, log)
    meta = {
        "run_id": run_id,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "environment": environment(),
        "config": config.as_dict(),
        "last_seed": last_seed(),
    }
    json_path, md_path = report.write(config.out, meta, sections)
    log(f"wrote {json_path} and {md_path}")
    return report.to_json(meta, sections)


def _run_section(ctx: RunContext, name: str, log: Callable[[str], None]) -> SectionResult:
    result = SectionResult(name)
    clock = time.monotonic()
    log(f"{name}: running")
    try:
        if name in PREFIXED:
            # One prefix per section: the archiver takes everything due under its prefix.
            with override_settings(SESSION_REDIS_PREFIX=f"{ctx.prefix}-{name}"):
                RUNNERS[name](ctx, result)
        else:
            RUNNERS[name](ctx, result)
    except Unavailable as exc:
        result.status, result.reason = "not available", str(exc)
    except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
        logger.error("bench section %s failed:\n%s", name, traceback.format_exc())
        result.status, result.reason = "error", f"{type(exc).__name__}: {exc}"
    result.seconds = round(time.monotonic() - clock, 2)
    log(f"{name}: {result.status} in {result.seconds:.1f} s {result.reason}".rstrip())
    return result


def _cleanup(ctx: RunContext, sections: list[SectionResult], log: Callable[[str], None]) -> None:
    """Delete the run's Redis keys, its archived rows, its user and key; refresh rollups."""
    from sessions_app.redis_client import get_redis

    client = get_redis()
    doomed = list(client.scan_iter(match=f"{ctx.prefix}-*", count=2000))
    for start in range(0, len(doomed), 1000):
        client.delete(*doomed[start : start + 1000])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM sessions_app_session WHERE user_id LIKE %s",
            [f"{ctx.user_prefix}%"],
        )
        ids = [row[0] for row in cursor.fetchall()]
    if ids:
        log(f"cleanup: deleting {len(ids):,} archived sessions the run wrote")
        _delete_sessions(ids)
    for cleanup in reversed(ctx.cleanups):
        cleanup()
    ran_metrics = any(s.name == "metrics" and s.status == "ok" for s in sections)
    if ids and (ran_metrics or ctx.topped_up):
        try:
            from sessions_app.metrics import compute_daily_metrics
        except ImportError:
            return
        days = max(ctx.config.metrics_days, 31 if ctx.topped_up else 1)
        today = timezone.localdate()
        compute_daily_metrics(today - timedelta(days=days - 1), today)


def _delete_sessions(ids: list) -> None:
    from sessions_app.archive import delete_archived_sessions

    delete_archived_sessions(ids)


def last_seed() -> dict | None:
    """The latest successful seed_demo run (how long the demo data took to write)."""
    from sessions_app.models import JobRun

    run = JobRun.objects.filter(job="seed_demo", outcome=JobRun.Outcome.SUCCESS).first()
    if run is None:
        return None
    return {
        "started_at": run.started_at.isoformat(),
        "seconds": round((run.duration_ms or 0) / 1000, 1),
        "counts": run.counts,
    }


def _git_commit() -> str:
    try:
        output = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return output.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict:
    """Where the numbers come from."""
    import os

    from sessions_app.redis_client import get_redis

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0].split()[0]
    try:
        redis_version = get_redis().info("server").get("redis_version", "?")
    except Exception:  # noqa: BLE001 - the report still says which Redis it could not read
        redis_version = "unavailable"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "postgres": postgres,
        "redis": redis_version,
        "python": platform.python_version(),
        "django": django.get_version(),
        "commit": _git_commit(),
        "database": connection.settings_dict.get("NAME"),
    }
