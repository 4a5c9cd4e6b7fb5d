# Two commands set everything up on a fresh machine with Python 3.11+:
#   make demo   runs the example site's scheduler on SQLite until every account has its e-mail
#   make test   runs the test suite on SQLite, then on PostgreSQL (a throwaway server) when one can be started
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv test lint format demo admin clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

test: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/test.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache example_site/db.sqlite3
