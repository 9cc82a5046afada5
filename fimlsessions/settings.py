"""Django settings for FIML Sessions, read from the environment (see .env.example)."""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from fimlsessions.env import (
    env_bool,
    env_float,
    env_hostports,
    env_int,
    env_list,
    env_networks,
    env_rate,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("FIML_DATA_DIR") or BASE_DIR / ".data")


def _dev_machine() -> bool:
    """DEBUG, `make run`/`make test` (FIML_DEV) or a pytest run: one host, so a key kept in
    .data/ is enough."""
    return env_bool("DEBUG", False) or env_bool("FIML_DEV", False) or "PYTEST_VERSION" in os.environ


def _secret_key() -> str:
    """SECRET_KEY from the environment; on a dev machine, one generated once and kept in .data/.

    In production every web process must sign with the same key (a login made on one host is
    checked on another), so a per-host generated key would log users out at random.
    """
    key = env_str("SECRET_KEY")
    if key:
        return key
    if not _dev_machine():
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG off it is required, and every web host must "
            "share it (generate one: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def _service_url(name: str, kind: str) -> str:
    """The configured URL, else the running embedded server's (fimlsessions.embedded)."""
    url = env_str(name)
    if url:
        return url
    from fimlsessions.embedded import running_urls

    url = running_urls(DATA_DIR).get(name)
    if url:
        return url
    raise ImproperlyConfigured(
        f"{name} is not set and no embedded {kind} is running. Use `make run` / `make test`, "
        f"or wrap the command: `python -m fimlsessions.embedded exec -- <command>`."
    )


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
PORT = env_int("PORT", 8000, minimum=1)

# HTTPS=true is the production profile: secure cookies, HSTS, redirect to https.
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
# Reverse proxies (addresses or CIDRs) whose X-Forwarded-For/-Proto are believed. The web server
# (uvicorn, through gunicorn.conf.py) rewrites the client address and scheme from those headers
# for these peers only, so Django reads REMOTE_ADDR and the scheme as given, and a forged header
# from anyone else changes nothing (not the rate limits' client, not the HTTPS redirect).
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES", [])
if env_str("BEHIND_PROXY") is not None:
    raise ImproperlyConfigured(
        "BEHIND_PROXY is replaced by TRUSTED_PROXIES: list your proxies' addresses or networks "
        "(e.g. TRUSTED_PROXIES=10.0.0.0/8) and unset BEHIND_PROXY."
    )
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "django_celery_beat",
    "django_htmx",
    "ninja",
    "sessions_app",
]

MIDDLEWARE = [
    "sessions_app.prometheus.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "sessions_app.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "sessions_app.audit.AuditActorMiddleware",
    # Last, so its process_exception sees a view's exception first.
    "sessions_app.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "fimlsessions.urls"
WSGI_APPLICATION = "fimlsessions.wsgi.application"
ASGI_APPLICATION = "fimlsessions.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = _service_url("DATABASE_URL", "PostgreSQL")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
# django-postgres-extra's back-end: the partitioning manager and schema editor that manage the
# archive's daily partitions (sessions_app/archive/partitions.py). It needs no extension.
DATABASES["default"]["ENGINE"] = "psqlextra.backend"
POSTGRES_EXTRA_AUTO_EXTENSION_SET_UP = False
# JIT compiling the dashboard's one-off aggregates takes longer than running them (~0.5 s).
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
# A streaming replica of DATABASE_URL for the read-only selectors (analytics, history, exports,
# user pages); see sessions_app/replica.py. Unset: everything reads the primary.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = dj_database_url.parse(
        DATABASE_REPLICA_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
    DATABASES["replica"]["ENGINE"] = DATABASES["default"]["ENGINE"]
    DATABASES["replica"]["OPTIONS"] = dict(DATABASES["default"]["OPTIONS"])
    # Tests run on one database: the replica alias mirrors it.
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["sessions_app.replica.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sentinel: the sentinels (host:port, ...) and the name they monitor the primary under. With
# them, REDIS_URL is optional and gives only the database number (and password).
REDIS_SENTINELS = env_hostports("REDIS_SENTINELS")
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER", "mymaster")
# Redis Cluster: REDIS_URL names any node.
REDIS_CLUSTER = env_bool("REDIS_CLUSTER", False)
if REDIS_SENTINELS and REDIS_CLUSTER:
    raise ImproperlyConfigured("REDIS_SENTINELS and REDIS_CLUSTER=true exclude each other")
# Live sessions are spread over this many shards (one hash tag each, so a Cluster spreads them
# over its masters; one archiver lock per shard). 1 for a single Redis. Changing it moves
# sessions between shards: change it only with no live sessions.
REDIS_SHARDS = env_int("REDIS_SHARDS", 1, minimum=1)
if REDIS_SHARDS > 1024:
    raise ImproperlyConfigured("REDIS_SHARDS: must be at most 1024 (every list asks each shard)")
REDIS_URL = env_str("REDIS_URL") or (
    "redis://127.0.0.1/0" if REDIS_SENTINELS else _service_url("REDIS_URL", "Redis")
)
# Writes that must survive a failover wait for this many replicas (WAIT), at most this long;
# 0 = don't wait. Too few confirmations: the write answers 503.
REDIS_WAIT_REPLICAS = env_int("REDIS_WAIT_REPLICAS", 0, minimum=0)
REDIS_WAIT_TIMEOUT_MS = env_int("REDIS_WAIT_TIMEOUT_MS", 500, minimum=1)
# Live-store keys live under this prefix; tests give each run its own.
SESSION_REDIS_PREFIX = env_str("SESSION_REDIS_PREFIX", "fs")
# Fail fast (503) when Redis is down or hung instead of hanging: the longest wait for one reply,
# for a connection, and how long a process then stops asking a Redis that timed out.
REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 1.0, minimum=0.05)
REDIS_CONNECT_TIMEOUT = env_float("REDIS_CONNECT_TIMEOUT", 0.5, minimum=0.05)
REDIS_BREAKER_SECONDS = env_float("REDIS_BREAKER_SECONDS", 2.0, minimum=0)

# Django sessions live in Postgres so that logging in works while Redis is down.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
# Failed logins allowed per client IP + username, and bad API keys per client IP, per window
# ("attempts/seconds", or with an m/h suffix); more get 429 until the window ends.
LOGIN_RATE_LIMIT = env_rate("LOGIN_RATE_LIMIT", "10/5m")
# Failed logins per client IP over all usernames (password spraying).
LOGIN_ADDRESS_RATE_LIMIT = env_rate("LOGIN_ADDRESS_RATE_LIMIT", "50/5m")
API_KEY_RATE_LIMIT = env_rate("API_KEY_RATE_LIMIT", "30/5m")
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True
USE_THOUSAND_SEPARATOR = False

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every start without it
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app folders too, so a forgotten collectstatic never breaks the page.
WHITENOISE_USE_FINDERS = True

# Celery: Redis broker, schedules in the database (django-celery-beat).
# Redis Cluster cannot be a Celery broker: with REDIS_CLUSTER set CELERY_BROKER_URL is required
# (a plain Redis or a Sentinel group). With sentinels, the broker follows them too.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")
if not CELERY_BROKER_URL and REDIS_SENTINELS:
    CELERY_BROKER_URL = ";".join(f"sentinel://{host}:{port}" for host, port in REDIS_SENTINELS)
    CELERY_BROKER_TRANSPORT_OPTIONS = {"master_name": REDIS_SENTINEL_MASTER}
elif not CELERY_BROKER_URL and REDIS_CLUSTER:
    raise ImproperlyConfigured(
        "REDIS_CLUSTER=true needs CELERY_BROKER_URL: Celery cannot use a Redis Cluster as its "
        "broker (use a plain Redis or a Sentinel group)"
    )
CELERY_BROKER_URL = CELERY_BROKER_URL or REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "sessions_app.beat:HeartbeatDatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# Retention defaults (the seed's variable names); admins override them per type in the admin.
SESSION_DEFAULT_TTL_HOURS = env_int("SESSION_DEFAULT_TTL_HOURS", 24, minimum=1)
SESSION_MAX_TTL_HOURS = env_int("SESSION_MAX_TTL_HOURS", 168, minimum=1)
SESSION_IDLE_TIMEOUT_MINUTES = env_int("SESSION_IDLE_TIMEOUT_MINUTES", 120, minimum=1)
SESSION_CLEANUP_INTERVAL_MINUTES = env_int("SESSION_CLEANUP_INTERVAL_MINUTES", 60, minimum=1)
SESSION_RETENTION_DAYS = env_int("SESSION_RETENTION_DAYS", 30, minimum=1)
SESSION_MAX_QUERIES_PER_SESSION = env_int("SESSION_MAX_QUERIES_PER_SESSION", 1000, minimum=1)
SESSION_ENABLE_ANALYTICS = env_bool("SESSION_ENABLE_ANALYTICS", True)
# Job run history (JobRun rows) kept this long by the daily retention job.
JOB_RUN_RETENTION_DAYS = env_int("JOB_RUN_RETENTION_DAYS", 30, minimum=1)
# Redis keeps a session this long past its expiry as a safety net; the archiver acts long before.
SESSION_REDIS_GRACE_HOURS = env_int("SESSION_REDIS_GRACE_HOURS", 72, minimum=1)
# Shortest ttl_hours / extend accepted: shorter ones are mistakes (tests set 0 to expire fast).
SESSION_MIN_TTL_SECONDS = env_int("SESSION_MIN_TTL_SECONDS", 60, minimum=0)
if SESSION_MAX_TTL_HOURS < SESSION_DEFAULT_TTL_HOURS:
    raise ImproperlyConfigured(
        "SESSION_MAX_TTL_HOURS must be at least SESSION_DEFAULT_TTL_HOURS "
        f"({SESSION_MAX_TTL_HOURS} < {SESSION_DEFAULT_TTL_HOURS})"
    )

# Alert emails: the console in development; SMTP once EMAIL_HOST is set.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "FIML Sessions <alerts@localhost>")
# Where alert emails and webhooks link to (the dashboard's own address).
ALERTS_BASE_URL = env_str("ALERTS_BASE_URL", f"http://127.0.0.1:{PORT}")

# /metrics (Prometheus): a scraper needs the bearer token or an address in the allow-list.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
