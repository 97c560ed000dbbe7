# The two commands of the README: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean compose-test

# The browser tests drive Debian's chromium (Playwright never downloads a browser here).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	@echo "Installing Debian's chromium for the browser tests"
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium \
	  || (DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Everything on embedded defaults (SQLite, filesystem broker): web + worker + beat, Ctrl-C stops all.
run: export OCTOTRACE_LOCAL_DEV ?= 1
run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo
	$(PY) manage.py runstack

# The whole test suite; DATABASE_URL / CELERY_BROKER_URL select PostgreSQL / Redis (see .ci/run).
test: export OCTOTRACE_LOCAL_DEV ?= 1
test: $(STAMP) $(CHROMIUM)
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Benchmarks on the configured database and broker (see docs/performance.md for the recorded runs).
bench: export OCTOTRACE_LOCAL_DEV ?= 1
bench: $(STAMP)
	$(PY) bench/ingest.py --start
	$(PY) bench/tree.py

# The production stack (docker/compose.yaml: web, worker, beat, PostgreSQL, Redis) built and run
# for real with podman, then ingest, read back and a worker restart mid-ingest (docker/compose_test.sh).
compose-test:
	docker/compose_test.sh

clean:
	rm -rf $(VENV) var
