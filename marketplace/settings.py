"""Settings, read from the environment only (see `.env.example` for every variable).

Local use needs nothing set: SQLite under `.run/`, a generated secret key, DEBUG on.
Production (DEBUG=0) requires SECRET_KEY and ALLOWED_HOSTS and passes
`manage.py check --deploy --fail-level WARNING`.
"""
from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from marketplace.envconfig import (
    database_from_url,
    env_bool,
    env_int,
    env_list,
    env_str,
    local_secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_DIR = Path(env_str("RUN_DIR", str(BASE_DIR / ".run")) or BASE_DIR / ".run")

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off")
    SECRET_KEY = local_secret_key(RUN_DIR / "secret_key")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "marketplace.apps.MarketplaceConfig",
    "marketplace.web.apps.WebConfig",  # templates, static files and tags of the pages
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "marketplace.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "marketplace.urls"
WSGI_APPLICATION = "marketplace.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(
        env_str("DATABASE_URL", f"sqlite:///{RUN_DIR / 'marketplace.sqlite3'}") or "", BASE_DIR
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_REDIS_URL = env_str("REDIS_URL")
CACHES = {
    "default": (
        {"BACKEND": "marketplace.cache.ResilientRedisCache", "LOCATION": _REDIS_URL,
         "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1}}
        if _REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "marketplace"}
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:dashboard"
LOGOUT_REDIRECT_URL = "web:home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(RUN_DIR / "static")) or RUN_DIR / "static")

# --- Marketplace ---------------------------------------------------------------------------
ARTIFACT_ROOT = Path(env_str("ARTIFACT_ROOT", str(RUN_DIR / "artifacts")) or RUN_DIR / "artifacts")
ARTIFACT_MAX_BYTES = env_int("ARTIFACT_MAX_BYTES", 64 * 1024 * 1024, minimum=1)
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
JOB_SPEC_MAX_BYTES = env_int("JOB_SPEC_MAX_BYTES", 64 * 1024, minimum=256)
# Input artifacts one job may name, in total: their bytes travel to the node with the run.
JOB_INPUT_MAX_BYTES = env_int("JOB_INPUT_MAX_BYTES", 64 * 1024 * 1024, minimum=1)
JOB_DEFAULT_BUDGET_WEI = env_int("JOB_DEFAULT_BUDGET_WEI", 10**16)  # 0.01 ETH
NODE_HEARTBEAT_TIMEOUT_S = env_int("NODE_HEARTBEAT_TIMEOUT_S", 30, minimum=1)
# Failed token authentications allowed per client address per minute before 429s.
AUTH_FAILURES_PER_MINUTE = env_int("AUTH_FAILURES_PER_MINUTE", 30, minimum=1)

# --- Dispatch: Celery (broker: Redis) and the Ray cluster ---------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", _REDIS_URL or "redis://127.0.0.1:6379/0")
RAY_ADDRESS = env_str("RAY_ADDRESS") or "127.0.0.1:6390"  # not 6379: that is Redis' port
RAY_NAMESPACE = env_str("RAY_NAMESPACE") or "marketplace"
# This process's address as the Ray cluster sees it (a container's own IP under Compose).
RAY_NODE_IP = env_str("RAY_NODE_IP") or "127.0.0.1"
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3, minimum=1)
NODE_HEARTBEAT_INTERVAL_S = env_int("NODE_HEARTBEAT_INTERVAL_S", 5, minimum=1)
# How often the dispatcher looks at queued jobs and running runs (Celery beat).
DISPATCH_SWEEP_S = env_int("DISPATCH_SWEEP_S", 2, minimum=1)
MONITOR_INTERVAL_S = env_int("MONITOR_INTERVAL_S", 1, minimum=1)
# Queue work on commit (off: jobs wait for the next sweep; the web app then never talks to Redis).
DISPATCH_QUEUE_ENABLED = env_bool("DISPATCH_QUEUE_ENABLED", True)

# --- The chain: the escrow contract holds the money (see marketplace/chain) ---------------------
# Empty: no chain, leases are not opened and nothing is paid (development and tests of other parts).
CHAIN_URL = env_str("CHAIN_URL") or ""
# The chain's RPC URL as users reach it, for the commands the pages show (CHAIN_URL may be an
# internal host, or carry a provider's key in its path); empty: CHAIN_URL without credentials.
CHAIN_PUBLIC_URL = env_str("CHAIN_PUBLIC_URL") or ""
# The marketplace's one signer (OPERATOR_ROLE and ARBITER_ROLE on the escrow). A secret: never logged.
CHAIN_OPERATOR_KEY = env_str("CHAIN_OPERATOR_KEY") or ""
# Blocks an event must be buried under before the follower applies it (0 on a local anvil).
CHAIN_CONFIRMATIONS = env_int("CHAIN_CONFIRMATIONS", 0)
CHAIN_POLL_S = env_int("CHAIN_POLL_S", 2, minimum=1)
# Logs fetched per eth_getLogs request while catching up.
CHAIN_LOG_CHUNK = env_int("CHAIN_LOG_CHUNK", 2000, minimum=1)
# The longest lease the marketplace opens, in seconds: the reservation is rate x this at most.
LEASE_MAX_DURATION_S = env_int("LEASE_MAX_DURATION_S", 3600, minimum=60)
# What `manage.py deploy_contracts` deploys with (the command's options override these).
CHAIN_ID = env_int("CHAIN_ID", 0)  # 0: whatever the node says; set it to refuse a wrong node
CHAIN_DEPLOYER_KEY = env_str("CHAIN_DEPLOYER_KEY") or ""  # a secret: admin of the escrow
CHAIN_TOKEN_ADDRESS = env_str("CHAIN_TOKEN_ADDRESS") or ""  # empty: deploy the test token (local only)
CHAIN_TREASURY = env_str("CHAIN_TREASURY") or ""  # empty: the deployer's address
CHAIN_GUARDIAN = env_str("CHAIN_GUARDIAN") or ""  # empty: the deployer's address
CHAIN_FEE_BPS = env_int("CHAIN_FEE_BPS", 250)
CHAIN_MIN_STAKE_WEI = env_int("CHAIN_MIN_STAKE_WEI", 10**18, minimum=1)
CHAIN_UNBONDING_DELAY_S = env_int("CHAIN_UNBONDING_DELAY_S", 7 * 24 * 3600)
CHAIN_SETTLE_WINDOW_S = env_int("CHAIN_SETTLE_WINDOW_S", 3600)
# How much of a provider's stake a proven-wrong result costs it (paid to the tenant), in wei.
SLASH_AMOUNT_WEI = env_int("SLASH_AMOUNT_WEI", 10**6)

# Requests bigger than this are refused with 413 before Django reads them.
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "marketplace.api.authentication.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "marketplace.api.pagination.BoundedLimitOffsetPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "marketplace.api.exceptions.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["marketplace.api.parsers.JSONParser"],
    "DEFAULT_THROTTLE_RATES": {
        "auth": env_str("THROTTLE_AUTH", "20/min"),
        "job_create": env_str("THROTTLE_JOB_CREATE", "60/min"),
        "heartbeat": env_str("THROTTLE_HEARTBEAT", "120/min"),
    },
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "GPU Marketplace API",
    "DESCRIPTION": "Rent GPU compute from providers; every error is JSON {code, detail}.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"GpuModelEnum": "marketplace.catalog.GPU_MODEL_CHOICES"},
    "SCHEMA_PATH_PREFIX": r"/api/v1",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- Production hardening (all pass `check --deploy`; each can be relaxed explicitly) -------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # health probes speak plain HTTP inside the network
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    if env_bool("BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
