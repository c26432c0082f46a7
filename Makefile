# LabSeg. The two commands a newcomer needs: `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
# Tests always run on PostgreSQL and Redis (started by scripts/services.sh when down).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/labseg
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=

.PHONY: run test bench lint setup venv frontend migrate services clean-test-media

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $@

frontend: frontend/dist/index.html
frontend/dist/index.html: $(shell test -d frontend/src && find frontend/src frontend/index.html frontend/package.json frontend/package-lock.json frontend/vite.config.ts frontend/tsconfig.json -type f 2>/dev/null)
	@if [ -f frontend/package.json ]; then \
	  cd frontend && { [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run build --silent; \
	else mkdir -p frontend/dist; fi

setup: venv frontend

migrate: setup
	$(PY) manage.py migrate --noinput -v 0

run: setup
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py labseg_demo
	HOST=$(HOST) PORT=$(PORT) PY=$(PY) bash scripts/run.sh

services:
	bash scripts/services.sh

test: setup services
	@if [ -f frontend/package.json ]; then cd frontend && npm test --silent; fi
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	  LABSEG_VAR_DIR=$(CURDIR)/var/test MEDIA_ROOT=$(CURDIR)/var/test/media LABSEG_DEVICE=cpu \
	  $(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench

lint: setup
	$(VENV)/bin/ruff check labseg apps tests bench
	@if [ -f frontend/package.json ]; then cd frontend && npm run lint --silent; fi
