"""gunicorn settings read by every `gunicorn` started from the repository root (the Procfile's
web process passes `-c gunicorn.conf.py`; `make run` goes through the Procfile).

uvicorn rewrites the client address and scheme from X-Forwarded-For/-Proto only for peers in
`forwarded_allow_ips`; it follows TRUSTED_PROXIES, so those headers from anyone else are
ignored (gunicorn's own default would trust loopback).
"""

import gc
import logging

from fimlsessions.env import env_networks

# A comma-separated string, as gunicorn validates it; empty trusts no peer.
forwarded_allow_ips = ",".join(env_networks("TRUSTED_PROXIES", []))


class _DropDoubleClose(logging.Filter):
    """uvicorn-worker closes the listening socket, then gunicorn closes it again at shutdown and
    logs "Error while closing socket [Errno 9] Bad file descriptor": harmless, but on every Ctrl-C
    it reads like a failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Error while closing socket")


def post_worker_init(worker) -> None:
    """gunicorn hook, in each worker process once it has started (the app loaded)."""
    worker.log.error_log.addFilter(_DropDoubleClose())
    # Django's and the app's long-lived objects leave the collector's generations: a full
    # collection (triggered by allocation, e.g. building a batch's replies) no longer walks
    # them on every request.
    gc.freeze()
