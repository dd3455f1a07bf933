"""Parley settings, read from the environment.

With nothing set, Parley runs embedded: SQLite, an in-memory channel layer and eager Celery.
Production sets DATABASE_URL (PostgreSQL), REDIS_URL, SECRET_KEY, FIELD_ENCRYPTION_KEY,
ALLOWED_HOSTS and PUBLIC_BASE_URL.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEV_SECRET_KEY = "parley-dev-only-secret-key-never-use-in-production"
# A valid Fernet key that is public by design: it only protects the embedded demo.
DEV_FIELD_ENCRYPTION_KEY = "cGFybGV5LWRldi1vbmx5LWZpZWxkLWVuY3J5cHRpb24="

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
# Comma-separated Fernet keys: the first encrypts, all decrypt (rotation).
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEY", DEV_FIELD_ENCRYPTION_KEY)

if not DEBUG and (SECRET_KEY == DEV_SECRET_KEY or DEV_FIELD_ENCRYPTION_KEY in FIELD_ENCRYPTION_KEYS):
    raise ImproperlyConfigured(
        "DEBUG is off but SECRET_KEY or FIELD_ENCRYPTION_KEY is the embedded development key. "
        "Set both in the environment."
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", PUBLIC_BASE_URL)
if env_bool("BEHIND_PROXY", False):
    # Twilio signs the public URL; behind a TLS-terminating proxy we must see it as the proxy does.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "django_htmx",
    "template_partials",
    "guardian",
    "apps.core",
    "apps.accounts",
    "apps.contacts",
    "apps.providers",
    "apps.conversations",
    "apps.message_templates",
    "apps.inbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "apps.accounts.middleware.CurrentOrganizationMiddleware",
    "apps.inbox.middleware.AgentTimezoneMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

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
                "apps.accounts.context_processors.organization",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0"))
    )
}
if os.environ.get("PARLEY_TEST_DB"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["PARLEY_TEST_DB"]}
if env_bool("DB_POOL", False) and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI every request runs in its own thread: persistent connections (CONN_MAX_AGE) would
    # pile up, and a new connection per request costs more than the webhook itself. A psycopg pool
    # per process hands connections back at the end of each request (docs/benchmarks.md).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": int(os.environ.get("DB_POOL_MIN_SIZE", "2")),
        "max_size": int(os.environ.get("DB_POOL_MAX_SIZE", "10")),
        "timeout": float(os.environ.get("DB_POOL_TIMEOUT", "10")),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Webhooks and workers write concurrently even in the embedded default. IMMEDIATE: a
    # transaction takes the write lock when it begins, so two that read and then write queue up
    # instead of one failing at once with "database is locked" (SQLite cannot upgrade a reader
    # that another writer is waiting on).
    DATABASES["default"].setdefault("OPTIONS", {}).update(timeout=20, transaction_mode="IMMEDIATE")
    # Tests race threads against each other; an in-memory shared-cache database answers "table
    # is locked" at once instead of waiting, so the embedded test database is a file.
    DATABASES["default"].setdefault("TEST", {}).setdefault("NAME", str(BASE_DIR / ".test-db.sqlite3"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row
GUARDIAN_MONKEY_PATCH_USER = False

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "inbox:index"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Until collectstatic fills STATIC_ROOT (production), WhiteNoise serves static/ and the apps'
# files straight from the finders. WhiteNoise would read DEBUG itself, but pytest-django turns
# DEBUG off after this file ran: tests serve like development, not from a STATIC_ROOT they lack.
WHITENOISE_USE_FINDERS = WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Attachments are served to providers from signed URLs that expire after this many seconds.
ATTACHMENT_URL_MAX_AGE = int(os.environ.get("ATTACHMENT_URL_MAX_AGE", str(24 * 3600)))
# Uploads and provider media larger than this are refused before they are stored.
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

REDIS_URL = os.environ.get("REDIS_URL", "")

# Timeouts: a paused Redis costs a publish one second, never a hung request.
_REDIS_LAYER_HOSTS = [{"address": REDIS_URL, "socket_timeout": 1.0, "socket_connect_timeout": 1.0}]
if REDIS_URL and os.environ.get("CHANNEL_LAYER", "pubsub") == "pubsub":
    # Every event goes to every inbox socket of its organization. Redis pub/sub publishes an
    # event once; each web process receives it once and hands it to its sockets in memory
    # (docs/benchmarks.md, live). Nothing is queued in Redis: a process that is down or
    # reconnecting misses events, which frames-are-hints allows (pages resync on reconnect).
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": _REDIS_LAYER_HOSTS}}
    }
elif REDIS_URL:
    # CHANNEL_LAYER=core: a list per socket in Redis, one entry per socket and event (a group
    # send to N sockets writes N copies). Sized for an organization's fan-out: a message over
    # capacity or older than expiry is dropped; 5,000 is a minute at 40 events/s for a socket that
    # stalls, a few MB of HTML per socket at worst.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": _REDIS_LAYER_HOSTS,
                "capacity": int(os.environ.get("CHANNEL_LAYER_CAPACITY", "5000")),
                "expiry": 60,
                # A socket that vanished without disconnect (a killed process) leaves its group
                # within a day (the default, kept explicit): it bounds a group send's fan-out.
                "group_expiry": 86400,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A broker that stops answering (paused, failing over) must not hold a webhook or a send: a publish
# gives up within about a second and the row is left for the sweep (robust on_commit enqueues).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "socket_timeout": 1.0, "socket_connect_timeout": 1.0}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# Every worker consumes both queues (without -Q). Sends an agent makes from the inbox go to
# "interactive", so a reply never waits behind a bulk batch in "celery" (docs/benchmarks.md).
CELERY_TASK_QUEUES = [Queue("celery"), Queue("interactive")]
CELERY_TASK_ROUTES = {"apps.conversations.tasks.message_deliver_interactive_task": {"queue": "interactive"}}
CELERY_BEAT_SCHEDULE = {
    "outbox-sweep": {"task": "apps.conversations.tasks.outbox_sweep_task", "schedule": 30.0},
    "inbound-sweep": {"task": "apps.conversations.tasks.inbound_event_sweep_task", "schedule": 60.0},
    # Mailboxes (IMAP) of email channels: new mail within a minute.
    "channels-poll": {"task": "apps.providers.tasks.channels_poll_task", "schedule": float(os.environ.get("POLL_SECONDS", "60"))},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.MembershipTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.accounts.permissions.IsOrganizationMember"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Parley API",
    "DESCRIPTION": "Conversations, messages, contacts and channels of one organization.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# Provider base URLs: a local fake or the sandbox can stand in.
TWILIO_API_BASE = os.environ.get("TWILIO_API_BASE", "https://api.twilio.com").rstrip("/")
# Inbound media is fetched only from these hosts (and their subdomains).
TWILIO_MEDIA_HOSTS = env_list("TWILIO_MEDIA_HOSTS", "api.twilio.com,twiliocdn.com,twilio.com")
# Amazon SNS signs SES notifications with a certificate fetched only from a host matching this.
SNS_CERT_HOST_PATTERN = os.environ.get("SNS_CERT_HOST_PATTERN", r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
# A private CA for mail servers with their own certificates (SMTP and IMAP TLS); else the system's.
EMAIL_CA_FILE = os.environ.get("EMAIL_CA_FILE", "")
META_GRAPH_BASE = os.environ.get("META_GRAPH_BASE", "https://graph.facebook.com").rstrip("/")
# Facebook Login's OAuth dialog (the browser goes there; a fake can stand in, like the Graph API).
META_DIALOG_BASE = os.environ.get("META_DIALOG_BASE", "https://www.facebook.com").rstrip("/")
# Messenger / Instagram attachments and WhatsApp Cloud media are fetched only from these hosts.
META_MEDIA_HOSTS = env_list("META_MEDIA_HOSTS", "fbcdn.net,fbsbx.com,cdninstagram.com,lookaside.fbsbx.com,whatsapp.net")
# The Telegram Bot API (a local fake in tests): calls go to {base}/bot<token>/<method>, files to
# {base}/file/bot<token>/<path>; media downloads come only from its host.
TELEGRAM_API_BASE = os.environ.get("TELEGRAM_API_BASE", "https://api.telegram.org").rstrip("/")
MEDIA_DOWNLOAD_MAX_BYTES = int(os.environ.get("MEDIA_DOWNLOAD_MAX_BYTES", str(16 * 1024 * 1024)))
# A media download (all redirects and the whole body) must finish within this many seconds.
MEDIA_DOWNLOAD_DEADLINE = float(os.environ.get("MEDIA_DOWNLOAD_DEADLINE", "60"))
PROVIDER_CONNECT_TIMEOUT = float(os.environ.get("PROVIDER_CONNECT_TIMEOUT", "5"))
PROVIDER_READ_TIMEOUT = float(os.environ.get("PROVIDER_READ_TIMEOUT", "20"))
# Outbound pacing per sender (token bucket); WhatsApp senders start at 80 messages/s.
SEND_RATE_PER_SECOND = float(os.environ.get("SEND_RATE_PER_SECOND", "80"))
# A sender's token due within this many seconds is waited for in the worker; a longer wait
# reschedules the task.
SEND_RATE_MAX_SLEEP = float(os.environ.get("SEND_RATE_MAX_SLEEP", "0.5"))
# The sandbox channel answers like a provider after these delays (seconds).
SANDBOX_DELAYS = {"delivered": 1.0, "read": 2.5, "reply": 4.0}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
