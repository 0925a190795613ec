# The README's commands. Everything runs from the project's own virtualenv (.venv).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MANAGE := $(PY) manage.py
HOST ?= 127.0.0.1:8000
ADMIN_USER ?= admin
ADMIN_PASSWORD ?= admin

.PHONY: setup setup-production run demo serve test screenshots services-start services-stop clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

.env:
	@# Development only (run, demo): DEBUG on and a random secret. Production sets real variables and has no .env;
	@# tests take their throw-away secret from tests/settings.py.
	printf 'DJANGO_DEBUG=1\nDJANGO_SECRET_KEY=dev-%s\n' "$$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > $@

setup: $(VENV)/.installed  ## install only

setup-production: setup  ## + the MySQL driver (needs libmariadb-dev: scripts/services.sh installs it)
	$(VENV)/bin/pip install --quiet -r requirements-mysql.txt

demo: setup .env  ## writes the development .env (DEBUG on); migrate, admin login, demo catalog, index
	$(MANAGE) migrate --noinput
	DJANGO_SUPERUSER_PASSWORD=$(ADMIN_PASSWORD) $(MANAGE) createsuperuser --noinput --username $(ADMIN_USER) --email admin@example.com 2>/dev/null || true
	$(MANAGE) load_demo
	$(MANAGE) reindex --missing

run: demo  ## everything, then serve on http://$(HOST)
	@echo "Serving on http://$(HOST)  (admin: $(ADMIN_USER) / $(ADMIN_PASSWORD) at /admin/)"
	$(MANAGE) runserver $(HOST)

# Production: gunicorn with gunicorn.conf.py (workers, threads, per-worker warm-up). Settings come from the
# environment only: no .env is written, and none is read unless DJANGO_ENV_FILE names one, so a development .env
# (DEBUG on) left in the checkout is never served. Needs DJANGO_SECRET_KEY (and DATABASE_URL etc. for MariaDB +
# Elasticsearch, after `make setup-production`). Photos are indexed as they are saved; cron `reindex --missing`.
serve: export DJANGO_ENV_FILE ?=
serve: setup  ## migrate, collect static files, serve with gunicorn on http://$(HOST)
	$(MANAGE) migrate --noinput
	$(MANAGE) collectstatic --noinput -v 0
	exec $(PY) -m gunicorn -c gunicorn.conf.py --bind $(HOST)

test: setup  ## the whole suite; service tests skip (loudly) unless the services are configured
	$(PY) -m pytest $(PYTEST_ARGS)

screenshots: setup  ## the browser tests, which save each page state under var/screenshots/ (needs apt's chromium)
	$(PY) -m pytest tests/browser -q

services-start:
	bash scripts/services.sh start

services-stop:
	bash scripts/services.sh stop

clean:
	rm -rf $(VENV) var .pytest_cache
