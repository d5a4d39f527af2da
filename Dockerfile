# The marketplace image: the web app, Celery, the provider agent, and the local chain (anvil) all run it.

# The Solidity tool chain, pinned by package-lock.json: anvil (the compose `chain` service), solc's
# JavaScript build (behind contracts/solc, for `manage.py compile_contracts`), OpenZeppelin. Node 20:
# the @foundry-rs binary packages ask for it. `npm install --no-save`, not `npm ci`: see the Makefile.
FROM node:20-bookworm-slim AS node
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund --no-save && npm cache clean --force

# The native EVM engine (workers/evm/rust: revm + PyO3), which maturin, the project's build backend,
# compiles into the project's wheel as workers.evm._native. Debian's rustc is too old for revm
# (edition 2024 crates), so the wheel is built on the official Rust image, on bookworm like the final
# image (same glibc) and with bookworm's Python 3.11 (same ABI); the final image gets the wheel, not
# the tool chain.
FROM rust:1.95-slim-bookworm AS native
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 CARGO_TERM_COLOR=never
WORKDIR /src
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null \
 && rm -rf /var/lib/apt/lists/* && python3 -m venv /venv
# The crates first (their own layer, unchanged by code changes); cargo wants a target to read the manifest.
COPY workers/evm/rust/Cargo.toml workers/evm/rust/Cargo.lock ./workers/evm/rust/
RUN mkdir workers/evm/rust/src && touch workers/evm/rust/src/lib.rs \
 && cargo fetch --locked --manifest-path workers/evm/rust/Cargo.toml && rm -r workers/evm/rust/src
COPY pyproject.toml ./
COPY marketplace ./marketplace
COPY workers ./workers
RUN /venv/bin/pip wheel --no-deps . -w /wheels

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# node needs libstdc++, which the slim Python image lacks.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libstdc++6 >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /app/node_modules ./node_modules
# anvil on PATH is the native binary, not npm's Node shim: as PID 1 it must get SIGTERM itself and
# write its state before the container stops.
RUN set -- /app/node_modules/@foundry-rs/anvil-linux-*/bin/anvil && [ "$#" -eq 1 ] && [ -x "$1" ] \
 && ln -s "$1" /usr/local/bin/anvil && anvil --version && node --version

COPY pyproject.toml README.md package.json package-lock.json ./
COPY marketplace ./marketplace
COPY workers ./workers
COPY manage.py ./
# The contracts: sources and the compiled artifacts `deploy_contracts` deploys (contracts/build).
COPY contracts/src ./contracts/src
COPY contracts/build ./contracts/build
COPY contracts/solc contracts/foundry.toml ./contracts/
# The project's wheel (native engine included) from the stage above, with its dependencies. The
# services run from /app (its workers/ comes first on sys.path), so the engine goes there too.
COPY --from=native /wheels /tmp/wheels
RUN pip install /tmp/wheels/gpu_marketplace-*.whl && rm -rf /tmp/wheels \
 && cp /usr/local/lib/python3.11/site-packages/workers/evm/_native.*.so workers/evm/ \
 && useradd --system --uid 10001 --home-dir /app market \
 && mkdir -p /data/artifacts /data/chain /app/static && chown -R market /data /app/static
# Static files are collected at build time so the running container needs no write access to code;
# the artifacts in the image must be what its sources compile to (solc 0.8.28 through node); and the
# native engine must import, from /app and from the installed package.
RUN export DEBUG=0 SECRET_KEY=build-only-not-a-secret-000000000000000000000000000000 ALLOWED_HOSTS=build \
    STATIC_ROOT=/app/static && python manage.py collectstatic --noinput -v 0 \
 && python manage.py compile_contracts --check \
 && python -c "import workers.evm._native" && (cd / && python -c "import workers.evm._native")

USER market
ENV STATIC_ROOT=/app/static ARTIFACT_ROOT=/data/artifacts RUN_DIR=/data
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && exec gunicorn marketplace.wsgi --bind 0.0.0.0:8000 --workers 3 --threads 4 --access-logfile -"]
