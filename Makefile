# The two commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3.11
export PATH := $(abspath $(VENV))/bin:$(PATH)
# One-machine development: settings may generate a SECRET_KEY (kept in .data/) when none is set.
export FIML_DEV ?= true
# Wraps a command: starts embedded Postgres/Redis when DATABASE_URL/REDIS_URL are unset.
WITH_SERVICES := $(PY) -m fimlsessions.embedded exec --

.PHONY: install run test lint format migrate shell bench seed clean-data

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=python3"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

install: $(VENV)/.installed

## Run web (gunicorn on 127.0.0.1:$${PORT:-8000}), Celery worker and beat; Ctrl-C stops all.
run: install
	$(WITH_SERVICES) sh scripts/serve.sh

## Lint, format check, migrations check, then every test.
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(WITH_SERVICES) sh -c '$(PY) manage.py makemigrations --check --dry-run && $(PY) -m pytest $(PYTEST_ARGS)'

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: install
	$(WITH_SERVICES) $(PY) manage.py migrate

shell: install
	$(WITH_SERVICES) $(PY) manage.py shell

seed: install
	$(WITH_SERVICES) $(PY) manage.py seed_demo $(SEED_ARGS)

bench: install
	$(WITH_SERVICES) $(PY) manage.py bench $(BENCH_ARGS)

## Delete the embedded databases' data (.data/); the next `make run` starts from scratch.
clean-data:
	rm -rf .data
