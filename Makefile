# `make run` and `make test` each install what is missing, then do their job.
# Needs Debian (or Ubuntu) with Python 3.11+; system packages come from apt when missing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
# The native EVM engine (Rust + PyO3), which maturin (the build backend) compiles into the package as
# workers.evm._native: the .so sits next to workers/evm/*.py (an editable install), named for the venv's Python.
CRATE := workers/evm/rust
# (the directories too: adding, removing or renaming a file changes them)
RUST_SOURCES := $(CRATE)/Cargo.toml $(CRATE)/Cargo.lock $(shell find $(CRATE)/src 2>/dev/null)
EXT_SUFFIX := $(shell $(if $(wildcard $(PY)),$(PY),$(PYTHON)) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
NATIVE := workers/evm/_native$(EXT_SUFFIX)
CARGO_FETCHED := $(CRATE)/target/.fetched
# rustup's cargo first (where rustup puts it, for shells that did not source ~/.cargo/env): Debian's is too old.
CARGO_BIN := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin
export PATH := $(CARGO_BIN):$(PATH)
# The highest rust-version in Cargo.lock (the revm crates'); `make rust` checks cargo against it.
RUST_MIN := 1.91
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

.PHONY: run test install node rust system-test-deps system-run-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Builds the native engine too (maturin, release profile, with the machine's cargo).
$(STAMP): pyproject.toml | $(PY) $(CARGO_FETCHED)
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

# The native engine again when its sources change (or the .so is gone): cargo recompiles what changed
# and maturin puts the new .so in place.
$(NATIVE): $(RUST_SOURCES) | $(STAMP) $(CARGO_FETCHED) rust
	$(PY) -m pip install --quiet --no-deps -e .
	@[ -s $@ ] || { echo "make: the build left no $@" >&2; exit 1; }
	touch $@

install: $(STAMP) $(NATIVE)

# Every crate the engine and its tests need, fetched here: the tests run without a network (cargo --offline).
$(CARGO_FETCHED): $(CRATE)/Cargo.toml $(CRATE)/Cargo.lock | rust
	cargo fetch --manifest-path $(CRATE)/Cargo.toml
	mkdir -p $(@D) && touch $@

rust:
	@v=$$(cargo --version 2>/dev/null | cut -d' ' -f2); \
	if [ -z "$$v" ]; then \
	  echo "make: the native EVM engine ($(CRATE)) needs Rust $(RUST_MIN) or newer, with cargo. Install it" \
	    "with rustup (Debian's rustc is too old): curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs" \
	    "| sh -s -- -y --profile minimal, then run make again" >&2; exit 1; fi; \
	if [ "$$(printf '%s\n' $(RUST_MIN) "$$v" | sort -V | head -n1)" != "$(RUST_MIN)" ]; then \
	  echo "make: cargo $$v ($$(command -v cargo)) is older than Rust $(RUST_MIN), which the native EVM engine" \
	    "needs: run \`rustup update stable\` (or install rustup: https://rustup.rs), then make again" >&2; exit 1; fi; \
	command -v cc >/dev/null || { echo "make: Rust needs a C linker (cc): sudo apt-get install gcc," \
	  "then run make again" >&2; exit 1; }

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
	rm -rf $(VENV) node_modules .run test-output $(CRATE)/target workers/evm/_native.*.so
