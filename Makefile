# `make run` and `make test` each install what is missing, then do their job.
# Needs Debian (or Ubuntu) with Python 3.11+; system packages come from apt when missing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
# The Solidity tool chain (solc's JavaScript build, OpenZeppelin, anvil, forge), pinned by package-lock.json.
NODE_STAMP := node_modules/.installed-$(shell cksum < package-lock.json | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000
REDIS_PORT ?= 6379
RAY_PORT ?= 6390
CHAIN_PORT ?= 8545
PYTEST_ARGS ?=

# Debian packages the tests need: a PostgreSQL server, a browser for the page tests, `ip` for the
# loopback-only namespace, Redis for Celery.
TEST_PACKAGES := postgresql chromium iproute2 redis-server
TEST_COMMANDS := /usr/lib/postgresql /usr/bin/chromium /usr/sbin/ip /usr/bin/redis-server

.PHONY: run test install node system-test-deps system-run-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Not `npm ci`: it refuses a lock file that lacks @foundry-rs's binaries for other platforms, which a
# registry mirror may not carry. `npm install --no-save` installs the locked versions and never
# rewrites the lock file.
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make: the contracts' tool chain needs Node.js and npm:" \
	  "please install them (sudo apt-get install nodejs npm), then run make again" >&2; exit 1; }
	npm install --no-audit --no-fund --no-save
	rm -f node_modules/.installed-*
	touch $@

node: $(NODE_STAMP)

system-test-deps:
	@missing=""; pkgs=($(TEST_PACKAGES)); paths=($(TEST_COMMANDS)); \
	for i in $${!pkgs[@]}; do [ -e "$${paths[$$i]}" ] || missing="$$missing $${pkgs[$$i]}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then echo "make: please install:$$missing (sudo apt-get install$$missing)" >&2; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

system-run-deps:
	@if ! command -v redis-server >/dev/null; then \
	  if [ "$$(id -u)" -ne 0 ]; then echo "make: please install redis-server (sudo apt-get install redis-server)" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	fi

# The whole suite against a throwaway PostgreSQL, inside a network namespace with only loopback.
test: install node system-test-deps
	scripts/loopback-only scripts/with-postgres $(PY) -m pytest $(PYTEST_ARGS)

# The marketplace on http://$(HOST):$(PORT)/ with demo accounts (SQLite unless DATABASE_URL is set).
run: install node system-run-deps
	$(PY) scripts/run_local.py --host $(HOST) --port $(PORT) --redis-port $(REDIS_PORT) --ray-port $(RAY_PORT) \
	  --chain-port $(CHAIN_PORT)

clean:
	rm -rf $(VENV) node_modules .run test-output
