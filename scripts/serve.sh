#!/bin/sh
# Prepare the database, bring up web, worker and beat, and say when the app is ready (run by
# `make run` inside the embedded-services wrapper, so DATABASE_URL and REDIS_URL are set here and
# `.env` has already been read once). Ctrl-C stops everything and exits 0.
set -e
PORT="${PORT:-8000}"
export PORT
note="$(mktemp)"
trap 'rm -f "$note"' EXIT
python manage.py bootstrap --login-note "$note"

# Prometheus multiprocess mode: every gunicorn worker and Celery process writes its metrics here
# and /metrics sums them; emptied at each start so counters begin at zero with the processes.
PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-${FIML_DATA_DIR:-.data}/prometheus}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
export PROMETHEUS_MULTIPROC_DIR

# -e /dev/null: honcho must not read .env a second time (it would override the embedded URLs
# for web, worker and beat but not for bootstrap). -p: honcho gives the first process (web)
# PORT=N; without it, it sets PORT=5000.
honcho start --no-prefix -e /dev/null -p "$PORT" -f Procfile &
honcho_pid=$!
python scripts/ready.py "$PORT" "$note" &
ready_pid=$!

stopping=""
stop() {
  stopping=1
  kill -TERM "$ready_pid" "$honcho_pid" 2>/dev/null || true
}
trap stop INT TERM HUP

set +e
wait "$honcho_pid"
status=$?
# A trapped signal interrupts `wait`; wait again until honcho has stopped its processes.
while kill -0 "$honcho_pid" 2>/dev/null; do
  wait "$honcho_pid"
  status=$?
done
kill -TERM "$ready_pid" 2>/dev/null
wait "$ready_pid" 2>/dev/null
rm -f "$note"
if [ -n "$stopping" ]; then
  echo "Stopped."
  exit 0
fi
exit "$status"
