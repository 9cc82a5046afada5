# The two commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3.11
export PATH := $(abspath $(VENV))/bin:$(PATH)
# One-machine development: settings may generate a SECRET_KEY (kept in .data/) when none is set.
export FIML_DEV ?= true
# Wraps a command: starts embedded Postgres/Redis when DATABASE_URL/REDIS_URL are unset.
WITH_SERVICES := $(PY) -m fimlsessions.embedded exec --
# Reads .env (if any) once, before the wrapper, so bootstrap, web, worker and beat all see it.
LOAD_ENV := set -a; if [ -f .env ]; then . ./.env; fi; set +a;
# Whose password `make password` resets.
ADMIN_USER ?= $(or $(DJANGO_SUPERUSER_USERNAME),admin)

.PHONY: install install-dev run password test lint typecheck format migrate shell bench seed demo clean-data

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=python3"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

install: $(VENV)/.installed

# Test and tooling dependencies (requirements-dev.txt); their own stamp, so `make run` never needs them.
$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install-dev: $(VENV)/.installed-dev

## Run web (gunicorn on 127.0.0.1:$${PORT:-8000}), Celery worker and beat; Ctrl-C stops all.
run: install
	@$(LOAD_ENV) $(WITH_SERVICES) sh scripts/serve.sh

## Set a new password for the admin account (ADMIN_USER=name for another account).
password: install
	@$(LOAD_ENV) $(WITH_SERVICES) $(PY) manage.py changepassword $(ADMIN_USER)

## Lint, format check, type check, migrations check, then every test; stops at the first failure.
test: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(WITH_SERVICES) sh -c '$(VENV)/bin/mypy && $(PY) manage.py makemigrations --check --dry-run && $(PY) -m pytest $(PYTEST_ARGS)'

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## mypy with django-stubs over sessions_app/ and fimlsessions/ (config in pyproject.toml).
typecheck: install-dev
	$(WITH_SERVICES) $(VENV)/bin/mypy

format: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: install
	$(WITH_SERVICES) $(PY) manage.py migrate

shell: install
	$(WITH_SERVICES) $(PY) manage.py shell

seed: install
	$(WITH_SERVICES) $(PY) manage.py seed_demo $(SEED_ARGS)

## The FIML quick reference's workflows on the store (examples/session_demo.py).
demo: install
	$(WITH_SERVICES) sh -c '$(PY) scripts/setup_session_db.py create && $(PY) examples/session_demo.py'

bench: install
	$(WITH_SERVICES) $(PY) manage.py bench $(BENCH_ARGS)

## Delete the embedded databases' data (.data/); the next `make run` starts from scratch.
clean-data:
	rm -rf .data
