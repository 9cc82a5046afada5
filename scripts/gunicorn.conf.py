"""gunicorn settings for `make run` (the Procfile's web process passes `-c` with this file)."""

import logging


class _DropDoubleClose(logging.Filter):
    """uvicorn-worker closes the listening socket, then gunicorn closes it again at shutdown and
    logs "Error while closing socket [Errno 9] Bad file descriptor": harmless, but on every Ctrl-C
    it reads like a failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Error while closing socket")


def post_worker_init(worker) -> None:
    """gunicorn hook, in each worker process once it has started."""
    worker.log.error_log.addFilter(_DropDoubleClose())
