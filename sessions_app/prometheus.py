"""Prometheus metrics at /metrics (text format, prometheus-client, multiprocess-safe).

Counters and histograms are incremented where things happen (store operations through
`instrument_store_op`, HTTP requests in `RequestMetricsMiddleware`, MCP in `observe_asgi`, job
runs when their JobRun row is finished). With PROMETHEUS_MULTIPROC_DIR set (`make run` sets it)
every gunicorn worker and Celery process writes its own files there and a scrape sums them.
Gauges of current state (live sessions, backlog, alert states) are read at scrape time by
`StateCollector`, from the store's public functions and small tables, so they are the same
whichever worker answers.
"""

from __future__ import annotations

import functools
import hmac
import inspect
import ipaddress
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.http import HttpResponse, HttpResponseForbidden
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)

STORE_OPS = Counter(
    "fiml_store_operations", "Live store operations", ["op", "outcome"]
)  # exposed as fiml_store_operations_total
STORE_SECONDS = Histogram(
    "fiml_store_operation_seconds",
    "Live store operation latency",
    ["op", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "fiml_http_requests", "HTTP requests", ["interface", "route", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "fiml_http_request_seconds",
    "HTTP request latency",
    ["interface", "route"],
    buckets=_LATENCY_BUCKETS,
)
JOB_RUNS = Counter("fiml_job_runs", "Background job runs", ["job", "outcome"])
JOB_SECONDS = Histogram(
    "fiml_job_run_seconds", "Background job run duration", ["job", "outcome"], buckets=_JOB_BUCKETS
)
ARCHIVED = Counter(
    "fiml_archive_sessions", "Sessions the archive jobs handled", ["outcome"]
)  # archived | failed | quarantined, from the cleanup job's counts

# Outcome label of a store operation by exception class name (a store error family).
_OUTCOMES = {
    "StoreUnavailable": "unavailable",
    "SessionNotFound": "not_found",
    "SessionNotActive": "not_active",
    "QueryLimitExceeded": "limit",
}


def _outcome(exc: BaseException) -> str:
    name = type(exc).__name__
    if name in _OUTCOMES:
        return _OUTCOMES[name]
    if isinstance(exc, ValueError):  # InvalidInput and its family
        return "invalid"
    return "error"


def observe_store_op(op: str, outcome: str, seconds: float) -> None:
    """Count one store operation and its latency."""
    STORE_OPS.labels(op, outcome).inc()
    STORE_SECONDS.labels(op, outcome).observe(seconds)


def instrument_store_op(method: Callable) -> Callable:
    """Wrap a store method (sync or async): count it and time it by name and outcome.

    Both store front-ends (`store/sync.py`, `store/aio.py`) wrap every public operation with it.
    """
    op = method.__name__

    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def awrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                result = await method(*args, **kwargs)
            except Exception as exc:
                observe_store_op(op, _outcome(exc), time.perf_counter() - started)
                raise
            observe_store_op(op, "ok", time.perf_counter() - started)
            return result

        return awrapper

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            result = method(*args, **kwargs)
        except Exception as exc:
            observe_store_op(op, _outcome(exc), time.perf_counter() - started)
            raise
        observe_store_op(op, "ok", time.perf_counter() - started)
        return result

    return wrapper


def _interface(path: str) -> str:
    if path.startswith("/api/"):
        return "rest"
    if path.startswith("/admin/"):
        return "admin"
    if path.startswith("/" + settings.STATIC_URL.strip("/") + "/"):
        return "static"
    return "dashboard"


class RequestMetricsMiddleware:
    """Counts Django requests by interface, route pattern (never the raw path) and status."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = getattr(match, "route", None) or "unmatched"
        interface = _interface(request.path)
        if interface == "static":
            route = "static"
        HTTP_REQUESTS.labels(interface, route, request.method, str(response.status_code)).inc()
        HTTP_SECONDS.labels(interface, route).observe(time.perf_counter() - started)
        return response


async def observe_asgi(app, scope, receive, send, interface: str = "mcp") -> None:
    """Run an ASGI app (MCP over HTTP) and count its request by status."""
    started = time.perf_counter()
    status = {"code": "500"}

    async def send_wrapper(message):
        if message["type"] == "http.response.start":
            status["code"] = str(message["status"])
        await send(message)

    try:
        await app(scope, receive, send_wrapper)
    finally:
        route = scope.get("path", "").rstrip("/") or "/"
        HTTP_REQUESTS.labels(interface, route, scope.get("method", ""), status["code"]).inc()
        HTTP_SECONDS.labels(interface, route).observe(time.perf_counter() - started)


def _job_run_saved(sender, instance, raw=False, **kwargs) -> None:
    """A finished JobRun counts once: when its outcome is set (running rows are skipped)."""
    if raw or instance.outcome == "running" or getattr(instance, "_prometheus_counted", False):
        return
    instance._prometheus_counted = True
    JOB_RUNS.labels(instance.job, instance.outcome).inc()
    if instance.duration_ms is not None:
        JOB_SECONDS.labels(instance.job, instance.outcome).observe(instance.duration_ms / 1000)
    from sessions_app import jobs

    if instance.job == jobs.CLEANUP and isinstance(instance.counts, dict):
        for outcome in ("archived", "failed", "quarantined"):
            value = instance.counts.get(outcome)
            if isinstance(value, int) and value > 0:
                ARCHIVED.labels(outcome).inc(value)


def connect_signals() -> None:
    """Count job runs as their rows are finished (called once from AppConfig.ready)."""
    from sessions_app.models import JobRun

    post_save.connect(_job_run_saved, sender=JobRun, dispatch_uid="prometheus-jobrun")


class StateCollector:
    """Gauges of current state, read at scrape time (the same answer from every worker)."""

    def collect(self):
        from sessions_app.alerts.models import AlertRule, AlertState
        from sessions_app.alerts.sources import archive_backlog, quarantined_sessions

        def guarded(name: str, func: Callable[[], Any]) -> Any:
            try:
                return func()
            except Exception as exc:  # noqa: BLE001 - a down service leaves its gauge out
                logger.warning("metrics: %s unavailable: %s", name, exc)
                return None

        from sessions_app.store import get_session_store

        counts = guarded("live sessions", lambda: get_session_store().live_counts())
        if counts is not None:
            live = GaugeMetricFamily(
                "fiml_live_sessions", "Live sessions now, by type", labels=["session_type"]
            )
            for session_type, value in counts["by_type"].items():
                live.add_metric([session_type], value)
            yield live
        backlog = guarded("archive backlog", archive_backlog)
        if backlog is not None:
            yield GaugeMetricFamily(
                "fiml_archive_backlog", "Sessions past due and not archived", value=backlog
            )
        quarantined = guarded("quarantine", quarantined_sessions)
        if quarantined is not None:
            yield GaugeMetricFamily(
                "fiml_quarantined_sessions", "Sessions in quarantine", value=quarantined
            )
        rules = guarded(
            "alert rules",
            lambda: list(AlertRule.objects.filter(enabled=True).values_list("name", "state")),
        )
        if rules is not None:
            states = GaugeMetricFamily(
                "fiml_alert_rules", "Enabled alert rules by state", labels=["state"]
            )
            for state in AlertState.values:
                states.add_metric([state], sum(1 for _, s in rules if s == state))
            yield states
            firing = GaugeMetricFamily(
                "fiml_alert_firing", "1 while the rule fires", labels=["rule"]
            )
            for name, state in rules:
                firing.add_metric([name], 1 if state == AlertState.FIRING else 0)
            yield firing


def _allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[7:].strip().encode(), token.encode())
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    for entry in settings.METRICS_ALLOWED_IPS:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            logger.warning("METRICS_ALLOWED_IPS: %r is not an address or network", entry)
    return False


def render_metrics() -> bytes:
    """Every metric in the Prometheus text format (summed across processes in multiprocess)."""
    state = CollectorRegistry()
    state.register(StateCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    return generate_latest(counted) + generate_latest(state)


def metrics_view(request):
    """GET /metrics for Prometheus; needs METRICS_TOKEN or an allowed address."""
    if not _allowed(request):
        return HttpResponseForbidden("metrics: bearer token or allowed address required\n")
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
