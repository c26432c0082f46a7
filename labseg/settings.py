"""LabSeg settings: read only from the environment.

Embedded default (nothing set): SQLite in var/ and a Celery broker on the local filesystem
(kombu's filesystem transport), so ``make run`` works on a fresh machine with no servers.
Production and tests: set DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis).
"""
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("LABSEG_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def read_or_create_secret_key(path: Path) -> str:
    """The key kept in ``path``; generated once (mode 0600) when the file does not exist yet.

    The web server and the worker may start together: the key is written to a temporary file that is then
    hard-linked into place, so a reader never sees a half-written file and only one key ever wins.
    """
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    import secrets
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret-key-")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(50) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process was first: use its key
            pass
    finally:
        os.unlink(tmp)
    return path.read_text(encoding="ascii").strip()


# Without SECRET_KEY: a key generated once and kept in $LABSEG_VAR_DIR/secret-key.txt (there is no built-in key).
SECRET_KEY = os.environ.get("SECRET_KEY") or read_or_create_secret_key(VAR_DIR / "secret-key.txt")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# HTTPS behind a reverse proxy that terminates TLS and sets X-Forwarded-Proto (overwriting what a client
# sent): LABSEG_HTTPS=1 trusts that header, redirects plain HTTP to HTTPS, marks the cookies secure and
# sends HSTS (LABSEG_HSTS_SECONDS, default one year; 0 sends none). Off: plain HTTP, as `make run` serves.
LABSEG_HTTPS = env_bool("LABSEG_HTTPS", False)
if LABSEG_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^api/v1/health/$"]  # probes that bypass the proxy
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("LABSEG_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.annotate",
    "apps.training",
    "apps.inference",
    "apps.live",
]

MIDDLEWARE = [
    "labseg.logging.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.annotate.accounts.PasswordChangeRequiredMiddleware",  # one-time passwords (issue 11.10)
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "labseg.urls"
WSGI_APPLICATION = "labseg.wsgi.application"
ASGI_APPLICATION = "labseg.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "labseg" / "templates"],
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

# --- Database: DATABASE_URL, else embedded SQLite -------------------------------------------
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}", conn_max_age=env_int("DB_CONN_MAX_AGE", 0)
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web server and worker share the file: wait for locks instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    # Write-ahead log: readers (a long backup, the worker's reads) never block a save, and a save never
    # blocks readers; "IMMEDIATE" takes the write lock when a transaction starts, so two writers queue up
    # instead of one failing half-way with "database is locked".
    DATABASES["default"]["OPTIONS"]["init_command"] = "PRAGMA journal_mode=WAL;"
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Files ----------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on a missing root
FRONTEND_DIST = BASE_DIR / "frontend" / "dist"
STATICFILES_DIRS = [FRONTEND_DIST] if FRONTEND_DIST.is_dir() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"

# Uploads: batch uploads carry hundreds of files; each file is capped by LABSEG_MAX_UPLOAD_BYTES.
LABSEG_MAX_UPLOAD_BYTES = env_int("LABSEG_MAX_UPLOAD_BYTES", 2 * 1024**3)
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("LABSEG_MAX_FILES_PER_UPLOAD", 1000)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 512 * 1024**2)  # JSON bodies with masks
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024**2  # larger files stream to a temp file
# Decoded size limits, checked from the file's header before any pixel is decoded (a small compressed
# file can declare a huge image). Images: pixels x channels of the plane that is read (the first T/Z
# plane of a stack); the default holds a 2 GiB uncompressed 16-bit plane (32768 x 32768 = 1.07e9) and
# needs ~2.2 GB of memory to decode one. Masks (annotation saves): height x width; the default lets any
# storable image be annotated; lower both to bound a web process's memory.
LABSEG_MAX_IMAGE_PIXELS = env_int("LABSEG_MAX_IMAGE_PIXELS", 1_100_000_000)
LABSEG_MAX_MASK_PIXELS = env_int("LABSEG_MAX_MASK_PIXELS", 1_100_000_000)
# Media quota: the bytes of every file under MEDIA_ROOT (originals, decoded-array caches, thumbnails,
# predictions, checkpoints). An upload that would pass it (its original + the cache of a large compressed
# image, counted from the header before anything is written) is refused with a per-file 413. Set it to
# what the media disk can hold; 0 turns it off.
LABSEG_MEDIA_QUOTA_BYTES = env_int("LABSEG_MEDIA_QUOTA_BYTES", 500 * 1024**3)

# --- REST framework -------------------------------------------------------------------------
LABSEG_LOGIN_RATE = os.environ.get("LABSEG_LOGIN_RATE", "10/min")  # sign-in form POSTs per address
REST_FRAMEWORK = {
    # JSON only: with the browsable renderer, a browser's "Accept: text/html" got errors as HTML pages
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous request then gets 401 with "WWW-Authenticate: Token" (not 403)
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "labseg.api.exception_handler",
    # Password guessing on auth/token/: per client address, counted in the default cache (shared by processes).
    "DEFAULT_THROTTLE_RATES": {"auth-token": os.environ.get("LABSEG_TOKEN_RATE", "10/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LabSeg API",
    "DESCRIPTION": "Projects, images, brush annotations, U-Net training runs, model versions and predictions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # two choice sets are called "status": a job's lifecycle and an uploaded file's HTTP outcome
    "ENUM_NAME_OVERRIDES": {"JobStatusEnum": "labseg.jobs.models.JobStatus",
                            "UploadStatusEnum": [(c, str(c)) for c in (201, 400, 409, 413, 507)]},
    # Swagger UI's JS/CSS from the drf-spectacular-sidecar package (static files), not a CDN: a lab
    # server without internet still shows /api/docs/.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery-broker"
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # broadcast (ping, inspect) exchanges: kombu's default is ./control in the working directory
        "control_folder": str(_broker_dir / "control"),
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
else:
    # Longer than the longest training run, so a slow run is never redelivered while alive.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 24 * 3600)}
CELERY_RESULT_BACKEND = None  # state lives in our own rows (TrainingRun, Prediction)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Cache: shared by every web process (throttle counts) ------------------------------------
# gunicorn runs several workers: a per-process cache (Django's LocMem default) let each count its own share
# of the sign-in attempts. LABSEG_CACHE_URL (redis://...) or, with a Redis broker, the broker's server under
# the key prefix "labseg-cache" (clear() deletes only those keys); else files under the var dir.
LABSEG_CACHE_URL = os.environ.get("LABSEG_CACHE_URL", "").strip() or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "")
if LABSEG_CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {"default": {
        "BACKEND": "labseg.cache.SharedRedisCache",  # django.core.cache.backends.redis.RedisCache, prefix-scoped
        "LOCATION": LABSEG_CACHE_URL,
        "KEY_PREFIX": os.environ.get("LABSEG_CACHE_PREFIX", "labseg-cache"),
        # an unreachable Redis answers within a second; the cache then counts in the process for a while
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }}
else:
    CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(VAR_DIR / "cache"),
        "OPTIONS": {"MAX_ENTRIES": 10_000},
    }}

# --- LabSeg ---------------------------------------------------------------------------------
LABSEG_DEVICE = os.environ.get("LABSEG_DEVICE", "auto")  # auto | cpu | cuda
LABSEG_TORCH_THREADS = env_int("LABSEG_TORCH_THREADS", 0)  # 0: torch's default
LABSEG_HEARTBEAT_TIMEOUT = env_int("LABSEG_HEARTBEAT_TIMEOUT", 120)  # seconds without heartbeat = dead
# A queued job no worker took for this long while no GPU job ran (a lost message) is re-sent once, then failed.
LABSEG_QUEUED_TIMEOUT = env_int("LABSEG_QUEUED_TIMEOUT", 600)
LABSEG_AUTO_PREDICT = env_bool("LABSEG_AUTO_PREDICT", True)
# Live training (apps/live, issue 13): a session stops this many seconds after the page's last heartbeat;
# drafts are accepted at most once per LABSEG_LIVE_DRAFT_INTERVAL_MS (faster: 429); the visible region is at
# most LABSEG_LIVE_MAX_REGION px a side; a session ends after LABSEG_LIVE_MAX_SECONDS whatever happens;
# the overlay is refreshed every LABSEG_LIVE_OVERLAY_MS of training; LABSEG_LIVE_CONFIG: JSON TrainConfig
# overrides of the live network trained from scratch (e.g. {"base_channels": 8}).
LABSEG_LIVE_HEARTBEAT_TIMEOUT = env_int("LABSEG_LIVE_HEARTBEAT_TIMEOUT", 15)
LABSEG_LIVE_DRAFT_INTERVAL_MS = env_int("LABSEG_LIVE_DRAFT_INTERVAL_MS", 500)
LABSEG_LIVE_MAX_REGION = env_int("LABSEG_LIVE_MAX_REGION", 1024)
LABSEG_LIVE_MAX_SECONDS = env_int("LABSEG_LIVE_MAX_SECONDS", 3600)
LABSEG_LIVE_OVERLAY_MS = env_int("LABSEG_LIVE_OVERLAY_MS", 1000)
LABSEG_LIVE_CONFIG = os.environ.get("LABSEG_LIVE_CONFIG", "")
# Every training run also fits a threshold and a random forest on the same labels and scores them on the
# same held-out images, up to this many pixels (training + held-out images together; 0 turns it off).
LABSEG_BASELINE_MAX_PIXELS = env_int("LABSEG_BASELINE_MAX_PIXELS", 16_000_000)
# Edge calibration (labseg.ml.baselines.calibrate_edges) holds ~40 bytes a pixel: larger predicted images keep the
# network's own edges, and the prediction's counts.edges says so (0: no limit). The default is the size above which
# predictions are written into a memory map (LABSEG_MEMMAP_PIXELS), where memory is bounded by the tiles.
LABSEG_EDGE_MAX_PIXELS = env_int("LABSEG_EDGE_MAX_PIXELS", 4096 * 4096)

# LOG_FORMAT=text (default): "time LEVEL logger: message" lines; json: one JSON object per line (labseg/logging.py).
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "labseg.logging.JsonFormatter"},
    },
    "filters": {"kombu_no_hostname": {"()": "labseg.logging.SkipKombuNoHostname"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {},
}
if CELERY_BROKER_URL.startswith("filesystem://"):  # its URL has no host: kombu warns on every connection
    LOGGING["loggers"]["kombu.connection"] = {"filters": ["kombu_no_hostname"]}
if LOG_FORMAT == "json":
    import logging

    logging.captureWarnings(True)  # Python warnings as log lines too (logger py.warnings)
