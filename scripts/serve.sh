#!/bin/sh
# Prepare the database and bring up web, worker and beat (run by `make run` inside the
# embedded-services wrapper, so DATABASE_URL and REDIS_URL are always set here).
set -e
python manage.py bootstrap
# Prometheus multiprocess mode: every gunicorn worker and Celery process writes its metrics here
# and /metrics sums them; emptied at each start so counters begin at zero with the processes.
PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-${FIML_DATA_DIR:-.data}/prometheus}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
export PROMETHEUS_MULTIPROC_DIR
exec honcho start --no-prefix -f Procfile
