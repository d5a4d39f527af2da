# The marketplace image: web app today; Celery and the provider agent reuse it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY marketplace ./marketplace
COPY workers ./workers
COPY manage.py ./
RUN pip install . && useradd --system --uid 10001 --home-dir /app market \
 && mkdir -p /data/artifacts /app/static && chown -R market /data /app/static
# Static files are collected at build time so the running container needs no write access to code.
RUN DEBUG=0 SECRET_KEY=collectstatic-only-not-a-secret-000000000000000000000000 ALLOWED_HOSTS=build \
    STATIC_ROOT=/app/static python manage.py collectstatic --noinput -v 0

USER market
ENV STATIC_ROOT=/app/static ARTIFACT_ROOT=/data/artifacts RUN_DIR=/data
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && exec gunicorn marketplace.wsgi --bind 0.0.0.0:8000 --workers 3 --threads 4 --access-logfile -"]
