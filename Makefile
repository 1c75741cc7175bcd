# The two commands of the README: `make run` and `make test`. Each sets up
# everything it needs on a machine that has only Python 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: run test install migrate check clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Runtime and test dependencies in one venv; reinstalled only when a requirements file changes.
$(STAMP): requirements.txt requirements-test.txt | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-test.txt
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py run_local

# The browser tests' accessibility engine (axe-core, from the npm registry, checked against its
# published sha512) is fetched once into the venv.
test: check
	$(PY) -m tests.axe_core >/dev/null
	$(PY) -m pytest

# The layout's import rules (pyproject.toml [tool.importlinter]), Django's system checks, and no
# model change without its migration. `make test` runs these first.
check: install
	$(VENV)/bin/lint-imports --no-logo
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache
