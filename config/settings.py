"""Octotrace settings.

One module for every environment: production differs by environment variables alone (see
README "Configuration"). Every knob is read through the small typed helpers below, which fail
loudly on a bad value instead of guessing.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


# Local state of the embedded mode (SQLite file, filesystem broker, beat schedule).
VAR_DIR = Path(env_str("OCTOTRACE_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

_INSECURE_KEY = "octotrace-insecure-development-key"
DEBUG = env_bool("DEBUG", False)
# Local development means: no production hint was given. `make run` and the tests set it.
LOCAL_DEV = env_bool("OCTOTRACE_LOCAL_DEV", False)
SECRET_KEY = env_str("SECRET_KEY", _INSECURE_KEY)
if SECRET_KEY == _INSECURE_KEY and not LOCAL_DEV:
    # Covers DEBUG too: the default key never boots outside local development.
    raise ImproperlyConfigured("SECRET_KEY is not set. Set SECRET_KEY, or OCTOTRACE_LOCAL_DEV=1 for a local run.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto: trust it, redirect plain HTTP to HTTPS
# and tell browsers to use HTTPS only (HSTS). `manage.py check --deploy` is clean with the production
# environment of docs/deploy.md (tests/test_deploy_check.py).
BEHIND_TLS_PROXY = env_bool("OCTOTRACE_BEHIND_TLS_PROXY", False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("OCTOTRACE_SSL_REDIRECT", BEHIND_TLS_PROXY)
# A year once the site is HTTPS-only: a browser that saw it refuses plain HTTP for that long.
SECURE_HSTS_SECONDS = env_int("OCTOTRACE_HSTS_SECONDS", 365 * 24 * 3600 if BEHIND_TLS_PROXY else 0, minimum=0)
# Both reach beyond this host (every subdomain of it; the browsers' built-in list), so they stay off
# until the operator opts in; check --deploy reminds them (security.W005, W021) while they are off.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("OCTOTRACE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("OCTOTRACE_HSTS_PRELOAD", False)
# Cookies travel over HTTPS only, except in local development (plain http://127.0.0.1).
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("OCTOTRACE_SECURE_COOKIES", not LOCAL_DEV)
SESSION_COOKIE_HTTPONLY = CSRF_COOKIE_HTTPONLY = True
# Security headers: no framing, no referrer to other sites, no MIME sniffing; the Content-Security-Policy
# (our own scripts only, no inline script) is set by dashboard.middleware.SecurityHeadersMiddleware.
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "tracer",
    "reports",
    "dashboard",
]
# The demo app (`manage.py demo`: a demo/demo superuser, the example crew's runs, a simulated GPU)
# exists only in local development, or when asked for explicitly; the production image has neither
# the app nor these variables, so it has no way to create the demo user.
OCTOTRACE_DEMO = env_bool("OCTOTRACE_DEMO", LOCAL_DEV)
if OCTOTRACE_DEMO:
    INSTALLED_APPS.append("demo")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Safe requests read from the replica when DATABASE_REPLICA_URL is set (tracer/replica.py).
    "tracer.replica.ReplicaReadsMiddleware",
    # Serves collected static files (admin CSS, and our own JS later) from gunicorn too.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "dashboard.middleware.SecurityHeadersMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "dashboard.context.projects",
                "dashboard.context_processors.budget_banner",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
_SQLITE_PATH = VAR_DIR / "octotrace.sqlite3"
DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    try:
        _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
else:
    _db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(_SQLITE_PATH)}

if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker processes share the file: wait for locks instead of failing, and take the
    # write lock at BEGIN so two writers never deadlock upgrading a read lock.
    _db.setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # The tests run the worker in another process, so the test database must be a file too.
    _db["TEST"] = {"NAME": str(VAR_DIR / "test-octotrace.sqlite3")}
elif _db["ENGINE"] == "django.db.backends.postgresql":
    # Fail fast when PostgreSQL is down so the receiver can answer 503 quickly.
    _db.setdefault("OPTIONS", {}).setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 5))
else:
    raise ImproperlyConfigured(f"Unsupported database engine {_db['ENGINE']}: use PostgreSQL or SQLite")
DATABASES = {"default": _db}

# A PostgreSQL read replica for the dashboard's and read API's reads (tracer/replica.py says which
# reads may go there). Off unless set; its lag is covered by REPLICA_STICKY_SECONDS after a write.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL:
    if _db["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URL needs DATABASE_URL to name a PostgreSQL primary")
    try:
        _replica = dj_database_url.parse(DATABASE_REPLICA_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_REPLICA_URL is not a valid database URL: {exc}") from None
    if _replica["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URL must name a PostgreSQL database (a read replica)")
    _replica.setdefault("OPTIONS", {}).setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 5))
    # A test run with a replica configured reads its test database through both aliases.
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES["replica"] = _replica
DATABASE_ROUTERS = ["tracer.replica.ReplicaRouter"]
REPLICA_STICKY_SECONDS = env_int("REPLICA_STICKY_SECONDS", 10, minimum=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Logins and sessions (docs/deploy.md "Logins and sessions") ---------------------------
# Sessions live in the database (shared by every web process). Cookies: HttpOnly always, Secure
# per OCTOTRACE_SECURE_COOKIES (above), SameSite from the environment.
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600, minimum=60)
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", False)
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = env_str("SESSION_COOKIE_SAMESITE", "Lax")
if SESSION_COOKIE_SAMESITE not in {"Lax", "Strict"}:
    raise ImproperlyConfigured(f"SESSION_COOKIE_SAMESITE={SESSION_COOKIE_SAMESITE!r}: use Lax or Strict")

# Every password we set from user input is checked: the admin's add-user and change-password forms,
# `createsuperuser` and `changepassword` (interactive), and `manage.py demo` outside local development.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env_int("OCTOTRACE_PASSWORD_MIN_LENGTH", 8, minimum=8)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Login throttling (django-axes): after OCTOTRACE_LOGIN_FAILURE_LIMIT failed logins for one username
# from one client address, that pair is refused (429, dashboard/locked_out.html) for the cool-off,
# even with the right password. Keyed on the pair so that nobody can lock another person out from
# elsewhere, and one address cannot spray one username. Staff unlock in the admin (Axes > Access
# attempts) or with `manage.py axes_reset_username NAME`.
INSTALLED_APPS.append("axes")
MIDDLEWARE.append("axes.middleware.AxesMiddleware")  # last, as axes asks: it turns a lockout into the page
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out pair before any password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("OCTOTRACE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("OCTOTRACE_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a successful login forgets the earlier failures of its pair
AXES_LOCKOUT_CALLABLE = "dashboard.logins.lockout_response"  # 429 + Retry-After + dashboard/locked_out.html
AXES_VERBOSE = False  # no configuration banner at every start; failures and lockouts are still logged
# Reverse proxies in front of the web processes that append the client's address to X-Forwarded-For
# (0: the client connects directly, REMOTE_ADDR is the address). Behind one nginx: 1.
OCTOTRACE_PROXY_COUNT = env_int("OCTOTRACE_PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "dashboard.logins.client_ip"

# Single sign-on through OpenID Connect (mozilla-django-oidc, dashboard/oidc.py), off unless a
# provider is configured: by its issuer (endpoints from its discovery document) or by explicit endpoints.
OCTOTRACE_OIDC_ISSUER = env_str("OCTOTRACE_OIDC_ISSUER", "").rstrip("/")
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("OCTOTRACE_OIDC_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = env_str("OCTOTRACE_OIDC_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = env_str("OCTOTRACE_OIDC_USERINFO_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = env_str("OCTOTRACE_OIDC_JWKS_ENDPOINT", "")
_OIDC_ENDPOINTS = [OIDC_OP_AUTHORIZATION_ENDPOINT, OIDC_OP_TOKEN_ENDPOINT, OIDC_OP_USER_ENDPOINT, OIDC_OP_JWKS_ENDPOINT]
OCTOTRACE_OIDC = bool(OCTOTRACE_OIDC_ISSUER) or any(_OIDC_ENDPOINTS)
if OCTOTRACE_OIDC:
    if not OCTOTRACE_OIDC_ISSUER and not all(_OIDC_ENDPOINTS):
        raise ImproperlyConfigured(
            "OIDC: set OCTOTRACE_OIDC_ISSUER, or all four of OCTOTRACE_OIDC_AUTHORIZATION_ENDPOINT, "
            "OCTOTRACE_OIDC_TOKEN_ENDPOINT, OCTOTRACE_OIDC_USERINFO_ENDPOINT and OCTOTRACE_OIDC_JWKS_ENDPOINT"
        )
    OIDC_RP_CLIENT_ID = env_str("OCTOTRACE_OIDC_CLIENT_ID", "")
    OIDC_RP_CLIENT_SECRET = env_str("OCTOTRACE_OIDC_CLIENT_SECRET", "")
    if not OIDC_RP_CLIENT_ID or not OIDC_RP_CLIENT_SECRET:
        raise ImproperlyConfigured("OIDC: set OCTOTRACE_OIDC_CLIENT_ID and OCTOTRACE_OIDC_CLIENT_SECRET")
    if SESSION_COOKIE_SAMESITE == "Strict":
        # The provider sends the browser back to /oidc/callback/ from its own site; a Strict cookie
        # would not come along, and the login's state (kept in the session) would be lost.
        raise ImproperlyConfigured("OIDC needs SESSION_COOKIE_SAMESITE=Lax")
    AUTHENTICATION_BACKENDS.append("dashboard.oidc.OidcBackend")
    OIDC_RP_SCOPES = env_str("OCTOTRACE_OIDC_SCOPES", "openid email profile")
    OIDC_RP_SIGN_ALGO = env_str("OCTOTRACE_OIDC_SIGN_ALGO", "RS256")
    OIDC_USE_PKCE = env_bool("OCTOTRACE_OIDC_PKCE", True)
    OIDC_TIMEOUT = env_int("OCTOTRACE_OIDC_TIMEOUT_SECONDS", 10, minimum=1)
    # First login: a new user whose username is this claim (else the email); no project membership.
    OIDC_CREATE_USER = env_bool("OCTOTRACE_OIDC_CREATE_USERS", True)
    OCTOTRACE_OIDC_USERNAME_CLAIM = env_str("OCTOTRACE_OIDC_USERNAME_CLAIM", "preferred_username")
    # Whether SSO may sign in to an account that has a password and the same email (see docs).
    OCTOTRACE_OIDC_LINK_EXISTING = env_bool("OCTOTRACE_OIDC_LINK_EXISTING", False)
# --- end of logins and sessions ------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "dashboard:login"
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request otherwise
# In local runs, serve static files straight from the apps (no collectstatic needed).
WHITENOISE_USE_FINDERS = LOCAL_DEV

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- Ingest -------------------------------------------------------------------------------
# Largest OTLP body accepted, before and after decompression (a gzip bomb stops here).
OCTOTRACE_MAX_BODY_BYTES = env_int("OCTOTRACE_MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024)
# A batch pending or processing for longer than this is re-enqueued by the sweeper.
OCTOTRACE_BATCH_STUCK_SECONDS = env_int("OCTOTRACE_BATCH_STUCK_SECONDS", 300, minimum=1)
# After this many claims a batch is marked failed instead of being retried again.
OCTOTRACE_BATCH_MAX_ATTEMPTS = env_int("OCTOTRACE_BATCH_MAX_ATTEMPTS", 5, minimum=1)
# Raw bodies of processed batches are kept this long (for `manage.py replay`); 0 drops at once.
OCTOTRACE_RAW_RETENTION_HOURS = env_int("OCTOTRACE_RAW_RETENTION_HOURS", 24 * 7, minimum=0)
# Store each captured message once per project and keep references in spans (tracer/messages.py).
# Off: spans keep the text as received (the bench measures both). Off by default until deletion on
# request and retention also remove the messages no span references any more (issue 16, item 4 is
# not built): with the store on, deleting a trace today leaves its messages' text in the store.
OCTOTRACE_MESSAGE_STORE = env_bool("OCTOTRACE_MESSAGE_STORE", False)
# Seconds a client is told to wait (Retry-After) when the database is unavailable.
OCTOTRACE_RETRY_AFTER_SECONDS = env_int("OCTOTRACE_RETRY_AFTER_SECONDS", 5, minimum=1)

# --- Rate limits (tracer/ratelimit.py, docs/security.md "Keys and rate limits") ------------
# Token buckets per project (all its keys together) and per key; a project's nullable rate_*
# fields override them. 0 turns a limit off. Over a limit: 429 with Retry-After, nothing stored.
# The defaults are far above what one agent fleet sends (the bench peaks near 60,000 spans/s).
OCTOTRACE_RATE_INGEST_RPS = env_int("OCTOTRACE_RATE_INGEST_RPS", 1000, minimum=0)
OCTOTRACE_RATE_INGEST_SPANS_PER_S = env_int("OCTOTRACE_RATE_INGEST_SPANS_PER_S", 200_000, minimum=0)
OCTOTRACE_RATE_READ_PER_MIN = env_int("OCTOTRACE_RATE_READ_PER_MIN", 1200, minimum=0)
OCTOTRACE_RATE_KEY_INGEST_RPS = env_int("OCTOTRACE_RATE_KEY_INGEST_RPS", 500, minimum=0)
OCTOTRACE_RATE_KEY_INGEST_SPANS_PER_S = env_int("OCTOTRACE_RATE_KEY_INGEST_SPANS_PER_S", 100_000, minimum=0)
OCTOTRACE_RATE_KEY_READ_PER_MIN = env_int("OCTOTRACE_RATE_KEY_READ_PER_MIN", 600, minimum=0)
# Where the buckets live: a Redis URL shares them between every web process (one Lua script per
# check); empty keeps them in each process (the embedded defaults). Default: the broker when it is Redis.
_broker_url = os.environ.get("CELERY_BROKER_URL", "")
OCTOTRACE_RATE_LIMIT_REDIS_URL = env_str(
    "OCTOTRACE_RATE_LIMIT_REDIS_URL", _broker_url if _broker_url.startswith(("redis://", "rediss://")) else ""
)
if OCTOTRACE_RATE_LIMIT_REDIS_URL and not OCTOTRACE_RATE_LIMIT_REDIS_URL.startswith(("redis://", "rediss://")):
    raise ImproperlyConfigured(
        f"OCTOTRACE_RATE_LIMIT_REDIS_URL={OCTOTRACE_RATE_LIMIT_REDIS_URL!r} is not a redis:// or rediss:// URL"
    )

# --- GPU telemetry (tracer/gpu/, docs/gpu-attribution.md) ----------------------------------
# Hosts whose Celery worker consumes `gpu.<host>` and samples its GPUs (comma-separated; none: off).
OCTOTRACE_GPU_HOSTS = env_list("OCTOTRACE_GPU_HOSTS", [])
# The project that the server-side sampler's GPUs belong to (slug).
OCTOTRACE_GPU_PROJECT = env_str("OCTOTRACE_GPU_PROJECT", "")
# This machine's name in OCTOTRACE_GPU_HOSTS (default: the hostname).
OCTOTRACE_GPU_HOST_NAME = env_str("OCTOTRACE_GPU_HOST_NAME", "")
# Beat sends a sampling task this often; the task reads the GPUs every SAMPLE_INTERVAL until then.
OCTOTRACE_GPU_SAMPLE_SECONDS = env_int("OCTOTRACE_GPU_SAMPLE_SECONDS", 10, minimum=1)
OCTOTRACE_GPU_SAMPLE_INTERVAL_SECONDS = env_int("OCTOTRACE_GPU_SAMPLE_INTERVAL_SECONDS", 1, minimum=1)
# Raw samples older than this are rolled up per minute and deleted; rollups older than the second go.
OCTOTRACE_GPU_RAW_RETENTION_HOURS = env_int("OCTOTRACE_GPU_RAW_RETENTION_HOURS", 24 * 7, minimum=1)
OCTOTRACE_GPU_ROLLUP_RETENTION_DAYS = env_int("OCTOTRACE_GPU_ROLLUP_RETENTION_DAYS", 400, minimum=1)
# Two samples of a GPU further apart than this bound no interval (the sampler was down between).
OCTOTRACE_GPU_MAX_GAP_SECONDS = env_int("OCTOTRACE_GPU_MAX_GAP_SECONDS", 30, minimum=1)
# Periodic attribution recomputes spans that overlap the last N minutes (late spans and samples).
OCTOTRACE_GPU_ATTRIBUTION_WINDOW_MINUTES = env_int("OCTOTRACE_GPU_ATTRIBUTION_WINDOW_MINUTES", 30, minimum=1)
# Spans are found by their start time: a model call that lasted longer than this is not attributed
# (HTTP clients give up far sooner; the OpenAI client's default timeout is 10 minutes).
OCTOTRACE_GPU_MAX_CALL_SECONDS = env_int("OCTOTRACE_GPU_MAX_CALL_SECONDS", 3600, minimum=1)

# Days of traces, spans, stored batches and GPU samples kept per project (a project's
# retention_days overrides it); beat deletes older data daily (tracer/retention.py).
OCTOTRACE_RETENTION_DAYS = env_int("OCTOTRACE_RETENTION_DAYS", 30, minimum=1)
# Seconds one project's retention task may spend before it stops and leaves the rest to the next run.
OCTOTRACE_RETENTION_BUDGET_SECONDS = env_int("OCTOTRACE_RETENTION_BUDGET_SECONDS", 240, minimum=1)

# Built call trees kept per web process for cheap expands (dashboard/selectors.py TreeCache), counted
# in spans: about 1 KB of memory each.
OCTOTRACE_TREE_CACHE_SPANS = env_int("OCTOTRACE_TREE_CACHE_SPANS", 200_000, minimum=0)

# --- Email (budget alerts) -----------------------------------------------------------------
# SMTP by default (EMAIL_HOST/EMAIL_PORT...); EMAIL_BACKEND=django.core.mail.backends.console.EmailBackend
# prints alerts instead. Tests use Django's locmem backend.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "octotrace@localhost")
# Budget webhooks to loopback, private or link-local addresses are refused (the worker must not
# be a way into the internal network), except in local development or when this is on.
OCTOTRACE_WEBHOOK_ALLOW_PRIVATE = env_bool("OCTOTRACE_WEBHOOK_ALLOW_PRIVATE", LOCAL_DEV)
# Budget webhooks are https:// only outside local development (refused when saved and when sent).
# Not an environment variable on purpose: a production server has no plain-http switch.
OCTOTRACE_WEBHOOK_HTTPS_ONLY = not LOCAL_DEV

# --- Celery -------------------------------------------------------------------------------
_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: messages are files in one folder that web, worker and beat share.
    for _sub in ("queue", "processed", "control"):
        (_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A message not acked within this time goes back to the queue (acks_late tasks).
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
    }
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
