"""Settings for the weights portal, read from the environment only.

Two modes, chosen by PORTAL_ENV:
- ``development`` (default): embedded defaults that need no server at all:
  SQLite under var/, a filesystem Celery broker, local file storage, email
  printed to the console.
- ``production``: every secret and endpoint must come from the environment;
  the process refuses to start without them (see ``_require``).

Every variable is documented in .env.example.
"""

import math
import os
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env is a convenience for operators; the environment always wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

PORTAL_ENV = env.str("PORTAL_ENV", default="development")
if PORTAL_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"PORTAL_ENV must be 'development' or 'production', not {PORTAL_ENV!r}.")
PRODUCTION = PORTAL_ENV == "production"

VAR_DIR = Path(env.str("PORTAL_VAR_DIR", default=str(BASE_DIR / "var")))


def _require(name: str) -> str:
    """Production refuses to start without its secrets and endpoints."""
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"{name} must be set when PORTAL_ENV=production. See .env.example for what it means."
        )
    return value


def _development_secret_key() -> str:
    # Generated once per checkout and kept under var/, so nothing secret is committed
    # and sessions survive restarts of `make run`.
    from django.core.management.utils import get_random_secret_key

    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(get_random_secret_key())
        path.chmod(0o600)
    return path.read_text().strip()


if PRODUCTION:
    SECRET_KEY = _require("SECRET_KEY")
    DATABASE_URL = _require("DATABASE_URL")
    CELERY_BROKER_URL = _require("CELERY_BROKER_URL")
    REDIS_URL = _require("REDIS_URL")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[]) or _require("ALLOWED_HOSTS").split(",")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _development_secret_key()
    DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
    REDIS_URL = env.str("REDIS_URL", default="")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])

# Old keys still accepted while rotating SECRET_KEY (sessions, signed links, encrypted TOTP secrets).
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

DEBUG = env.bool("DEBUG", default=not PRODUCTION)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PORTAL_SITE_NAME = env.str("PORTAL_SITE_NAME", default="Model Weights Portal")
PORTAL_BASE_URL = env.str("PORTAL_BASE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "portal.apps.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "csp",
    "django_countries",
    "portal.apps.PortalConfig",
    "access.apps.AccessConfig",
    "inference.apps.InferenceConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Download links (/dl/) go straight to their views from here: see portal.middleware.
    "portal.middleware.BrowserlessViewMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "csp.middleware.CSPMiddleware",
    # Innermost: a view's empty 405 gets a body naming the allowed methods (pages and API alike).
    "portal.method_not_allowed.MethodNotAllowedBodyMiddleware",
]

# Where BrowserlessViewMiddleware looks for views marked @browserless.
BROWSERLESS_PATH_PREFIXES = ("/dl/", "/hub/")

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "portal.context_processors.portal",
            ],
        },
    },
]

DATABASES = {"default": env.db_url_config(DATABASE_URL)}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60 if PRODUCTION else 0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A kept connection that a database restart ended is replaced before a request uses it; the
    # check costs no round trip (portal.postgresql).
    DATABASES["default"]["ENGINE"] = "portal.postgresql"
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The test database is a file, not memory, so a real Celery worker started by the
    # tests can open it too; one per test run, so parallel runs do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
    # The embedded default serves several processes at once (web, worker, sandbox worker): write
    # transactions take the lock when they begin, so two never deadlock upgrading a read lock
    # ("database is locked"), and they wait their turn; WAL lets readers go on while one writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Seconds a cache operation waits for Redis (to connect, then to answer) before going on without it.
REDIS_CACHE_TIMEOUT_SECONDS = env.float("REDIS_CACHE_TIMEOUT_SECONDS", default=1.0)
if REDIS_URL:
    CACHES = {
        "default": {
            # Django's Redis cache, except that an unreachable Redis is an empty cache, not a 500
            # (portal.cache says what that costs).
            "BACKEND": "portal.cache.FaultTolerantRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_connect_timeout": REDIS_CACHE_TIMEOUT_SECONDS,
                "socket_timeout": REDIS_CACHE_TIMEOUT_SECONDS,
            },
        }
    }
else:
    # A file cache is shared by every process on the machine, which the login
    # rate limits need (web and worker both count failures).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

AUTH_USER_MODEL = "portal.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "catalog"
LOGOUT_REDIRECT_URL = "catalog"

# --- Accounts (django-allauth) -------------------------------------------------
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_EMAIL_SUBJECT_PREFIX = f"[{PORTAL_SITE_NAME}] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if PRODUCTION else "http"
ACCOUNT_ADAPTER = "portal.adapters.AccountAdapter"
PORTAL_SIGNUP_OPEN = env.bool("PORTAL_SIGNUP_OPEN", default=True)
# Repeated failed logins (portal.adapters.AccountAdapter): at most LOGIN_FAILURES_PER_IP_PER_MINUTE
# from one IP, and LOGIN_FAILURES_PER_ACCOUNT per account from one IP within LOGIN_LOCKOUT_SECONDS,
# after which that account is locked at that IP (only) for the rest of the window. An account also
# takes at most LOGIN_FAILURES_PER_ACCOUNT_PER_MINUTE failures a minute from all the IPs it has not
# logged in from in the last LOGIN_KNOWN_ADDRESS_DAYS together: slowed down, never locked, for its owner.
LOGIN_FAILURES_PER_IP_PER_MINUTE = env.int("LOGIN_FAILURES_PER_IP_PER_MINUTE", default=10)
LOGIN_FAILURES_PER_ACCOUNT = env.int("LOGIN_FAILURES_PER_ACCOUNT", default=5)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=900)
LOGIN_FAILURES_PER_ACCOUNT_PER_MINUTE = env.int("LOGIN_FAILURES_PER_ACCOUNT_PER_MINUTE", default=10)
LOGIN_KNOWN_ADDRESS_DAYS = env.int("LOGIN_KNOWN_ADDRESS_DAYS", default=30)
ACCOUNT_RATE_LIMITS = {
    "login_failed": (
        f"{LOGIN_FAILURES_PER_IP_PER_MINUTE}/m/ip,"
        f"{LOGIN_FAILURES_PER_ACCOUNT}/{LOGIN_LOCKOUT_SECONDS}s/key"
    ),
}

MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = PORTAL_SITE_NAME
MFA_ADAPTER = "portal.adapters.MFAAdapter"

# --- Email -------------------------------------------------------------------------
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="portal@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
if PRODUCTION:
    vars().update(env.email_url_config(_require("EMAIL_URL")))
else:
    # EMAIL_URL also works in development, e.g. "filemail://" is not supported by
    # django-environ, so EMAIL_FILE_PATH switches to the file backend instead.
    EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default="")
    if EMAIL_FILE_PATH:
        EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    elif env.str("EMAIL_URL", default=""):
        vars().update(env.email_url_config(env.str("EMAIL_URL")))
    else:
        EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# --- API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Deny by default: every endpoint that is public says so itself.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.PortalPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
    # drf-spectacular's, plus the errors every endpoint of a kind answers (401, 403, 404, pages).
    "DEFAULT_SCHEMA_CLASS": "portal.api.schema.PortalAutoSchema",
    "EXCEPTION_HANDLER": "portal.api.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only; odd JSON (too deep, NaN, NUL, lone surrogates) is a 400 naming the field: see the parser.
    "DEFAULT_PARSER_CLASSES": ["portal.api.parsers.PortalJSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": f"{PORTAL_SITE_NAME} API",
    "DESCRIPTION": "Research access to model weights: catalog, requests, review, grants, downloads, sandbox jobs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Requests and grants both have a `status`, decisions and messages a `kind`: one enum name per choice set.
    "ENUM_NAME_OVERRIDES": {
        "AccessRequestStatusEnum": "access.requests.models.RequestStatus",
        "GrantStatusEnum": "access.grants.models.GrantStatus",
        "DecisionKindEnum": "access.review.models.DecisionKind",
        "MessageKindEnum": "access.requests.models.MessageKind",
        "VariantDecisionEnum": "access.requests.models.VariantDecision",
        "SandboxJobStatusEnum": "inference.sandbox.models.JobStatus",
    },
}
# Personal API tokens.
API_TOKEN_PREFIX = "mwp_"
API_TOKEN_DEFAULT_LIFETIME_DAYS = env.int("API_TOKEN_DEFAULT_LIFETIME_DAYS", default=90)
API_TOKEN_LAST_USED_RESOLUTION_SECONDS = env.int("API_TOKEN_LAST_USED_RESOLUTION_SECONDS", default=60)

# --- Celery ------------------------------------------------------------------------
CELERY_BROKER_URL = CELERY_BROKER_URL
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery-broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Exchange bindings; kombu's default is ./control in whatever folder the process started in.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Longer than the longest task (10 minutes) and the longest wait of an email's retry (10 minutes),
    # so no task is handed to a second worker while the first still has it; short enough that the
    # tasks of a worker killed outright run again within a quarter of an hour.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=900)}
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
# A pool process killed mid-task (the OOM killer, a segfault): the task goes back to the queue and
# runs again, instead of being acknowledged as failed and lost. Tasks are written to bear a second
# run; an email may then arrive twice, which beats never.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Tasks are sent after their transaction commits (transaction.on_commit). While the broker is down
# (Redis restarting) a send waits for it, trying again, for up to this long (portal.celery), instead
# of failing the request whose change is already committed and losing its email; past it, it fails.
CELERY_PUBLISH_RETRY_SECONDS = env.float("CELERY_PUBLISH_RETRY_SECONDS", default=20.0)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "sessions-clear-expired": {"task": "portal.sessions_clear_expired", "schedule": crontab(hour=3, minute=17)},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
HEALTHZ_BROKER_TIMEOUT_SECONDS = env.float("HEALTHZ_BROKER_TIMEOUT_SECONDS", default=2.0)

# --- Storage of weight files --------------------------------------------------------
PORTAL_STORAGE_BACKEND = env.str("PORTAL_STORAGE_BACKEND", default="local")
PORTAL_STORAGE_ROOT = env.str("PORTAL_STORAGE_ROOT", default=str(VAR_DIR / "storage"))
S3_BUCKET = env.str("S3_BUCKET", default="")
S3_ENDPOINT_URL = env.str("S3_ENDPOINT_URL", default="") or None
S3_REGION = env.str("S3_REGION", default="us-east-1")
S3_ACCESS_KEY_ID = env.str("S3_ACCESS_KEY_ID", default="") or None
S3_SECRET_ACCESS_KEY = env.str("S3_SECRET_ACCESS_KEY", default="") or None
if PORTAL_STORAGE_BACKEND not in {"local", "s3"}:
    raise ImproperlyConfigured("PORTAL_STORAGE_BACKEND must be 'local' or 's3'.")
if PRODUCTION and PORTAL_STORAGE_BACKEND == "s3":
    S3_BUCKET = _require("S3_BUCKET")
# Files at least this large go to S3 in parts (uploaded in parallel, retried part by part).
S3_MULTIPART_THRESHOLD_MB = env.int("S3_MULTIPART_THRESHOLD_MB", default=64)

# --- Weight downloads ---------------------------------------------------------------
DOWNLOAD_LINK_TTL_HOURS = env.float("DOWNLOAD_LINK_TTL_HOURS", default=24)
DOWNLOAD_LINK_MAX_DOWNLOADS = env.int("DOWNLOAD_LINK_MAX_DOWNLOADS", default=5)
# Lifetime of the presigned S3 GET the gateway redirects to; capped at 15 minutes. S3 checks it
# when a transfer starts, not while it runs, so it only has to outlive the redirect; until it
# expires the URL can be fetched again without the gateway counting it, so keep it short.
DOWNLOAD_PRESIGNED_URL_SECONDS = min(env.int("DOWNLOAD_PRESIGNED_URL_SECONDS", default=60), 900)
# Local storage behind nginx: the gateway answers with X-Accel-Redirect to this internal
# location (e.g. /protected-weights/) and nginx sends the file. Empty: Django streams it.
DOWNLOAD_ACCEL_REDIRECT_PREFIX = env.str("DOWNLOAD_ACCEL_REDIRECT_PREFIX", default="")
# Leak rule: a grant whose links (any of its bundles) and sandbox were used from more than this
# many distinct networks (/24 or /48) within the window has its links suspended, and reviewers
# are alerted.
DOWNLOAD_LEAK_MAX_NETWORKS = env.int("DOWNLOAD_LEAK_MAX_NETWORKS", default=3)
DOWNLOAD_LEAK_WINDOW_HOURS = env.float("DOWNLOAD_LEAK_WINDOW_HOURS", default=24)
# A link allows its downloads x the file's size plus this many bytes (at most half the file): what
# a server had sent into the network's buffers when a client dropped, which the resume asks again.
DOWNLOAD_RESUME_SLACK_BYTES = env.int("DOWNLOAD_RESUME_SLACK_BYTES", default=64 << 20)
# New download links a grant may get within 24 hours (each retires the last); past it, a 429.
DOWNLOAD_BUNDLES_PER_GRANT_PER_DAY = env.int("DOWNLOAD_BUNDLES_PER_GRANT_PER_DAY", default=10)
# Requests for links that do not exist: each network's first N a minute are logged, then it
# gets 429s; past the site-wide N a minute they are answered but not logged.
DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE = env.int("DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE", default=30)
DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE_TOTAL = env.int("DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE_TOTAL", default=600)

# --- Fingerprints --------------------------------------------------------------------
# Master keys of the per-recipient marks in downloaded weights, "ID:SECRET" separated by commas:
# new copies are marked with the first; the others stay to identify copies marked with them
# (rotate by putting a new key first). Unset: one key derived from SECRET_KEY, id "secret-key-"
# and 8 hex digits of its digest (set FINGERPRINT_KEYS in production: see access.W002).
def _fingerprint_keys(value: str) -> dict[str, bytes]:
    import hashlib
    import hmac

    if not value.strip():
        # The id names the key's digest: after SECRET_KEY changes, copies marked with the old key
        # are refused by name (list the old key in FINGERPRINT_KEYS), never made with another.
        derived = hmac.new(SECRET_KEY.encode(), b"portal weight fingerprints", hashlib.sha256).digest()
        return {f"secret-key-{hashlib.sha256(derived).hexdigest()[:8]}": derived}
    keys = {}
    for item in value.split(","):
        key_id, _, secret = item.strip().partition(":")
        if not key_id or len(secret) < 32 or len(key_id) > 40 or key_id in keys:
            raise ImproperlyConfigured(
                "FINGERPRINT_KEYS is 'ID:SECRET,ID:SECRET' with distinct ids of up to 40 characters and secrets "
                "of at least 32 characters (e.g. from `python -c 'import secrets; print(secrets.token_hex(32))'`)."
            )
        keys[key_id] = secret.encode()
    return keys


FINGERPRINT_KEYS = _fingerprint_keys(env.str("FINGERPRINT_KEYS", default=""))
# A recipient's copies whose files total at most this many bytes get their checksums computed while
# the links are made (ready at once); larger ones by a Celery task, the page saying "preparing".
FINGERPRINT_INLINE_CHECKSUM_BYTES = env.int("FINGERPRINT_INLINE_CHECKSUM_BYTES", default=64 << 20)
# Where reviewers put suspect copies (scp, a mounted volume) for the identification page, which
# reads paths inside it only.
FINGERPRINT_SUSPECT_DIR = Path(env.str("FINGERPRINT_SUSPECT_DIR", default=str(VAR_DIR / "suspects")))

# --- Sandbox ------------------------------------------------------------------------
# What one /v1/ request may ask for; read where requests are parsed (inference.sandbox.openai_params).
SANDBOX_MAX_TOKENS = env.int("SANDBOX_MAX_TOKENS", default=1024)
SANDBOX_MAX_CHOICES = env.int("SANDBOX_MAX_CHOICES", default=8)
SANDBOX_MAX_PROMPTS = env.int("SANDBOX_MAX_PROMPTS", default=32)
SANDBOX_MAX_STOP_SEQUENCES = env.int("SANDBOX_MAX_STOP_SEQUENCES", default=16)
SANDBOX_MAX_PROMPT_CHARS = env.int("SANDBOX_MAX_PROMPT_CHARS", default=32000)
# Longest prompt in tokens, where a variant sets none of its own (ModelVariant.sandbox_max_prompt_tokens).
SANDBOX_MAX_PROMPT_TOKENS = env.int("SANDBOX_MAX_PROMPT_TOKENS", default=1536)
# Per-user defaults; reviewers and admins override them per user (SandboxQuota).
SANDBOX_CONCURRENT_REQUESTS = env.int("SANDBOX_CONCURRENT_REQUESTS", default=4)
SANDBOX_REQUESTS_PER_MINUTE = env.int("SANDBOX_REQUESTS_PER_MINUTE", default=60)
SANDBOX_TOKENS_PER_DAY = env.int("SANDBOX_TOKENS_PER_DAY", default=200_000)
# Queued jobs across all users before new ones get 503; queued jobs older than the timeout expire.
SANDBOX_QUEUE_LIMIT = env.int("SANDBOX_QUEUE_LIMIT", default=256)
SANDBOX_QUEUE_TIMEOUT_SECONDS = env.int("SANDBOX_QUEUE_TIMEOUT_SECONDS", default=120)
# Wall-clock limit of one job inside the worker, from its start.
SANDBOX_JOB_TIME_LIMIT_SECONDS = env.int("SANDBOX_JOB_TIME_LIMIT_SECONDS", default=300)
# A running job whose worker has not touched it for this long is failed (the worker died).
SANDBOX_HEARTBEAT_TIMEOUT_SECONDS = env.float("SANDBOX_HEARTBEAT_TIMEOUT_SECONDS", default=5.0)
# Prompts and outputs are kept this long for abuse review, then deleted (counts and timings stay).
SANDBOX_RECORD_RETENTION_DAYS = env.int("SANDBOX_RECORD_RETENTION_DAYS", default=30)
# How text travels from the worker to the web process: Redis Streams where Redis is configured,
# else append-only files under var/ (the embedded default, no server).
SANDBOX_TRANSPORT = env.str("SANDBOX_TRANSPORT", default="redis" if REDIS_URL else "files")
# The Redis database of the streams: not the cache's, which clearing the cache would empty.
SANDBOX_REDIS_URL = env.str("SANDBOX_REDIS_URL", default=REDIS_URL)
SANDBOX_STREAM_DIR = Path(env.str("SANDBOX_STREAM_DIR", default=str(VAR_DIR / "sandbox-streams")))
# The worker: where it caches checked copies of published weights, which device it runs on
# ("" picks CUDA when present), how many bytes of loaded models it keeps, and how it batches.
SANDBOX_CACHE_DIR = Path(env.str("SANDBOX_CACHE_DIR", default=str(VAR_DIR / "sandbox-cache")))
SANDBOX_DEVICE = env.str("SANDBOX_DEVICE", default="")
SANDBOX_MODEL_MEMORY_MB = env.int("SANDBOX_MODEL_MEMORY_MB", default=16384)
SANDBOX_MAX_BATCH = env.int("SANDBOX_MAX_BATCH", default=32)
# The Celery queue sandbox workers consume (`celery worker -Q sandbox --pool threads`).
SANDBOX_QUEUE = env.str("SANDBOX_QUEUE", default="sandbox")
# Sandbox jobs go to their own queue, consumed only by sandbox workers (the GPU machines).
CELERY_TASK_ROUTES = {"inference.sandbox_job_run": {"queue": SANDBOX_QUEUE}}
SANDBOX_BATCH_WINDOW_MS = env.float("SANDBOX_BATCH_WINDOW_MS", default=300.0)

# --- Static files -------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
# Outside production, whitenoise serves straight from the app folders (no collectstatic).
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = not PRODUCTION
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security -----------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
# Under /api/ a failed CSRF check answers in the API's JSON error body (403); elsewhere Django's page.
CSRF_FAILURE_VIEW = "portal.api.errors.csrf_failure"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # The TLS-terminating proxy in front of gunicorn says the scheme in this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Strict CSP in every mode, so development shows what production would block.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# How many reverse proxies in front of the app append to X-Forwarded-For. Client
# IPs (audit log, login rate limits, the leak rule's networks) are read through allauth's
# adapter with it. Production must say so, 0 included: behind a proxy, a 0 left by default
# makes every client the proxy (one network, so the leak rule never fires; one address, so
# the login limit is global).
if PRODUCTION and not env.str("TRUSTED_PROXY_COUNT", default=""):
    raise ImproperlyConfigured(
        "TRUSTED_PROXY_COUNT must be set when PORTAL_ENV=production: the number of reverse proxies in front "
        "of the portal that append to X-Forwarded-For (1 behind docker-compose.yml's nginx, 2 with a TLS "
        "terminator in front of that, 0 only when clients connect to the portal directly). See .env.example."
    )
ALLAUTH_TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if ALLAUTH_TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT must be 0 or more.")

# --- Access requests, review and grants ------------------------------------------------
# Every limit and policy of the workflow, read here and nowhere else.
# The form's minimum; screening flags a use case as short only below this same number.
REQUEST_USE_CASE_MIN_CHARS = env.int("REQUEST_USE_CASE_MIN_CHARS", default=150)
REQUEST_PUBLICATIONS_MAX = env.int("REQUEST_PUBLICATIONS_MAX", default=10)
REQUEST_USE_CASE_MAX_CHARS = env.int("REQUEST_USE_CASE_MAX_CHARS", default=20000)
# Longest reason, message or note a reviewer or applicant may write.
REVIEW_TEXT_MAX_CHARS = env.int("REVIEW_TEXT_MAX_CHARS", default=10000)
SCREENING_FREE_MAIL_DOMAINS = env.list(
    "SCREENING_FREE_MAIL_DOMAINS",
    default=[
        "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "aol.com",
        "icloud.com", "me.com", "proton.me", "protonmail.com", "gmx.de", "gmx.net", "web.de", "mail.ru",
        "yandex.ru", "qq.com", "163.com", "126.com",
    ],
)  # fmt: skip
# ISO 3166-1 alpha-2 codes; requests from these are flagged, and rejected by policy
# for variants whose "auto_reject_embargoed" is on.
SCREENING_EMBARGOED_COUNTRIES = env.list("SCREENING_EMBARGOED_COUNTRIES", default=["CU", "IR", "KP", "SY"])
# The estimated decision date divides the queue position by recent throughput, blended with
# the default pace, which counts as REVIEW_ESTIMATE_PRIOR_DECISIONS decisions.
REVIEW_THROUGHPUT_WINDOW_DAYS = env.int("REVIEW_THROUGHPUT_WINDOW_DAYS", default=28)
REVIEW_DEFAULT_DECISIONS_PER_DAY = env.float("REVIEW_DEFAULT_DECISIONS_PER_DAY", default=5.0)
REVIEW_ESTIMATE_PRIOR_DECISIONS = env.int("REVIEW_ESTIMATE_PRIOR_DECISIONS", default=20)
if not (
    REVIEW_THROUGHPUT_WINDOW_DAYS >= 1
    and math.isfinite(REVIEW_DEFAULT_DECISIONS_PER_DAY)
    and REVIEW_DEFAULT_DECISIONS_PER_DAY >= 0.01
    and REVIEW_ESTIMATE_PRIOR_DECISIONS >= 1
):
    raise ImproperlyConfigured(
        "REVIEW_THROUGHPUT_WINDOW_DAYS must be at least 1, REVIEW_DEFAULT_DECISIONS_PER_DAY a number of at "
        "least 0.01 and REVIEW_ESTIMATE_PRIOR_DECISIONS at least 1."
    )
if "SCREENING_SHORT_USE_CASE_CHARS" in os.environ:
    # Removed: a use case the form accepts must never be flagged as short.
    raise ImproperlyConfigured(
        "SCREENING_SHORT_USE_CASE_CHARS is no longer read: the 'use case is short' flag follows "
        "REQUEST_USE_CASE_MIN_CHARS, the form's own minimum. Remove it from the environment."
    )
# Reviewers hear of new requests at once ("immediate") or in one daily email ("digest").
REVIEWER_NOTIFICATIONS = env.str("REVIEWER_NOTIFICATIONS", default="immediate")
if REVIEWER_NOTIFICATIONS not in {"immediate", "digest"}:
    raise ImproperlyConfigured("REVIEWER_NOTIFICATIONS must be 'immediate' or 'digest'.")
REVIEWER_DIGEST_HOUR_UTC = env.int("REVIEWER_DIGEST_HOUR_UTC", default=8)
GRANT_EXPIRY_REMINDER_DAYS = env.int("GRANT_EXPIRY_REMINDER_DAYS", default=14)
# The furthest end date a reviewer may give a grant, in days from today (about ten years); a grant
# without an end date is still possible. Later dates are refused by name, never stored.
GRANT_MAX_DURATION_DAYS = env.int("GRANT_MAX_DURATION_DAYS", default=3650)

# Webhooks (access.webhooks): tries per message, the first retry's delay (doubled at each retry,
# at most six hours), each POST's time limit, and the Celery queue that delivers them.
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=30.0)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
WEBHOOK_QUEUE = env.str("WEBHOOK_QUEUE", default="celery")
CELERY_BEAT_SCHEDULE.update(
    {
        "grants-expire": {"task": "access.grants_expire_due", "schedule": crontab(minute=5)},
        "grants-remind-expiry": {"task": "access.grants_remind_expiring", "schedule": crontab(hour=7, minute=0)},
        "sandbox-jobs-sweep": {"task": "inference.sandbox_jobs_sweep", "schedule": 30.0},
        "sandbox-records-purge": {"task": "inference.sandbox_records_purge", "schedule": crontab(minute=20)},
        "webhooks-sweep": {"task": "access.webhooks_sweep", "schedule": 300.0},
        "reviewer-digest": {
            "task": "access.reviewer_digest_send",
            "schedule": crontab(hour=REVIEWER_DIGEST_HOUR_UTC, minute=0),
        },
    }
)
