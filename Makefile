# Two commands set everything up on a fresh machine with Python 3.11+:
#   make demo   runs the example site's scheduler on SQLite until every account has its e-mail
#   make test   runs the test suite on SQLite, then on PostgreSQL (a throwaway server) when one can be started
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Another Django to test against, e.g. DJANGO_SPEC='Django>=6,<7' (CI does, on Python 3.12).
DJANGO_SPEC ?=

.PHONY: venv test lint format demo admin clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(if $(DJANGO_SPEC),'$(DJANGO_SPEC)')
	touch $@

test: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/test.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The demo and the admin share their own SQLite file, so they never touch the dev database.
ACCOUNTS ?= 1000
DELETED_ACCOUNTS ?= 25
ADMIN_ADDRESS ?= 127.0.0.1:8000
DEMO_DB := $(CURDIR)/example_site/demo.sqlite3
DEMO_ENV := DJANGO_SETTINGS_MODULE=example_site.settings DATABASE_URL='sqlite:///$(DEMO_DB)' EMAIL_URL=memorymail://
MANAGE := $(BIN)/python manage.py
HAS_ADMIN := import sys; from django.contrib.auth import get_user_model; \
	sys.exit(0 if get_user_model().objects.filter(username='admin').exists() else 1)

demo: venv
	rm -f '$(DEMO_DB)' '$(DEMO_DB)-journal' '$(DEMO_DB)-wal' '$(DEMO_DB)-shm'
	$(DEMO_ENV) $(MANAGE) migrate --verbosity 0
	$(DEMO_ENV) $(MANAGE) seed_accounts --count $(ACCOUNTS) --deleted $(DELETED_ACCOUNTS)
	$(DEMO_ENV) $(MANAGE) planton_demo
	@echo "Browse the accounts and the executions in the admin: make admin, then open"
	@echo "http://$(ADMIN_ADDRESS)/admin/ and log in as admin / admin."

admin: venv
	$(DEMO_ENV) $(MANAGE) migrate --verbosity 0
	@if $(DEMO_ENV) $(MANAGE) shell --verbosity 0 -c "$(HAS_ADMIN)"; then \
		echo "Superuser admin exists."; \
	else \
		$(DEMO_ENV) DJANGO_SUPERUSER_PASSWORD=admin $(MANAGE) createsuperuser --noinput \
			--username admin --email admin@example.com; \
	fi
	$(DEMO_ENV) $(MANAGE) runserver $(ADMIN_ADDRESS)

clean:
	rm -rf $(VENV) .pytest_cache example_site/db.sqlite3
