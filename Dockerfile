# The marketplace image: the web app, Celery, the provider agent, and the local chain (anvil) all run it.

# The Solidity tool chain, pinned by package-lock.json: anvil (the compose `chain` service), solc's
# JavaScript build (behind contracts/solc, for `manage.py compile_contracts`), OpenZeppelin. Node 20:
# the @foundry-rs binary packages ask for it. `npm install --no-save`, not `npm ci`: see the Makefile.
FROM node:20-bookworm-slim AS node
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund --no-save && npm cache clean --force

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
RUN pip install . && useradd --system --uid 10001 --home-dir /app market \
 && mkdir -p /data/artifacts /data/chain /app/static && chown -R market /data /app/static
# Static files are collected at build time so the running container needs no write access to code;
# and the artifacts in the image must be what its sources compile to (solc 0.8.28 through node).
RUN export DEBUG=0 SECRET_KEY=build-only-not-a-secret-000000000000000000000000000000 ALLOWED_HOSTS=build \
    STATIC_ROOT=/app/static && python manage.py collectstatic --noinput -v 0 \
 && python manage.py compile_contracts --check

USER market
ENV STATIC_ROOT=/app/static ARTIFACT_ROOT=/data/artifacts RUN_DIR=/data
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && exec gunicorn marketplace.wsgi --bind 0.0.0.0:8000 --workers 3 --threads 4 --access-logfile -"]
