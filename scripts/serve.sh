#!/bin/sh
# Prepare the database and bring up web, worker and beat (run by `make run` inside the
# embedded-services wrapper, so DATABASE_URL and REDIS_URL are always set here).
set -e
python manage.py bootstrap
exec honcho start --no-prefix -f Procfile
