"""The Celery app: configuration from Django settings under the CELERY_ namespace."""

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fimlsessions.settings")

app = Celery("fimlsessions")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_watch = None


@worker_ready.connect
def _start_watch(sender=None, **kwargs):
    # Heartbeat for /healthz and the beat self-check (sessions_app.worker).
    global _watch
    from sessions_app.worker import Watch

    _watch = Watch(getattr(sender, "hostname", None) or "worker")
    _watch.start()


@worker_shutdown.connect
def _stop_watch(**kwargs):
    if _watch is not None:
        _watch.stop()
