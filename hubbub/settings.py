"""Settings for hubbub. Everything a deployment changes comes from HUBBUB_* environment variables."""

import os
import secrets
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HUBBUB_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_from_file(name: str) -> str:
    """A secret generated on first start and kept in var/, so a fresh install needs no set-up."""
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = os.environ.get("HUBBUB_SECRET_KEY") or _secret_from_file("secret_key")
# Credentials of social accounts are encrypted with this key (Fernet, derived with HKDF).
ENCRYPTION_KEY = os.environ.get("HUBBUB_ENCRYPTION_KEY") or _secret_from_file("encryption_key")
DEBUG = os.environ.get("HUBBUB_DEBUG", "") == "1"
ALLOWED_HOSTS = [h for h in os.environ.get("HUBBUB_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("HUBBUB_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "hubbub.accounts.apps.Config",
    "hubbub.connectors.apps.Config",
    "hubbub.inbox.apps.Config",
    "hubbub.playbook.apps.Config",
    "hubbub.publishing.apps.Config",
    "hubbub.governance.apps.Config",
    "hubbub.listening.apps.Config",
    "hubbub.understanding",
    "hubbub.routing.apps.Config",
    "hubbub.crisis.apps.Config",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "hubbub.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hubbub.urls"
WSGI_APPLICATION = "hubbub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "hubbub" / "templates"],
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


def database_from_url(url: str) -> dict:
    """postgres://user:password@host:port/name -> Django DATABASES entry."""
    parts = urlparse(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"HUBBUB_DATABASE_URL: unsupported scheme {parts.scheme!r}, use postgres://")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "hubbub",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # Waitress's threads keep their connection: a new PostgreSQL backend costs its first queries
        # 15-20 ms of catalog loading and planning (bench/next_case.py); checked before each reuse.
        "CONN_MAX_AGE": None,
        "CONN_HEALTH_CHECKS": True,
    }


if os.environ.get("HUBBUB_DATABASE_URL"):
    DATABASES = {"default": database_from_url(os.environ["HUBBUB_DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("HUBBUB_SQLITE_PATH", str(VAR_DIR / "hubbub.sqlite3")),
            "OPTIONS": {
                # WAL lets the web server read while the worker writes; IMMEDIATE avoids
                # "database is locked" upgrades from read to write inside a transaction.
                # A 64 MB page cache (the default is 2 MB) keeps the queue indexes in memory.
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;"
                    " PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;"
                ),
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # Tests use a file too, as production does: a thread (a stream consumer, the worker)
            # then waits for the write lock (busy_timeout). Django's default in-memory test database
            # shares one cache between threads, where a second writer fails at once with "database
            # table is locked".
            "TEST": {"NAME": str(Path(tempfile.gettempdir()) / f"hubbub-test-{os.getpid()}.sqlite3")},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "inbox:queue"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
TIME_ZONE = os.environ.get("HUBBUB_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `hubbub` itself is not an app: its static folder is listed here.
STATICFILES_DIRS = [BASE_DIR / "hubbub" / "static"]
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# Static files are served straight from the app directories: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
# The structured playbook form posts some 20 fields a rule (hubbub.lib.playbook_form.MAX_RULES of
# them at most); Django's default of 1,000 would refuse a playbook of 50 rules.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 20_000
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Outbound HTTP (feeds, networks) refuses private and loopback addresses unless this is set:
# tests and local demos set it to talk to servers on 127.0.0.1.
HUBBUB_ALLOW_PRIVATE_URLS = os.environ.get("HUBBUB_ALLOW_PRIVATE_URLS", "") == "1"
# The Meta app whose webhooks /webhooks/meta/ receives (Facebook Pages and Instagram).
HUBBUB_META_APP_SECRET = os.environ.get("HUBBUB_META_APP_SECRET", "")
HUBBUB_META_VERIFY_TOKEN = os.environ.get("HUBBUB_META_VERIFY_TOKEN", "")
# Largest feed or API response read, in bytes.
HUBBUB_MAX_RESPONSE_BYTES = int(os.environ.get("HUBBUB_MAX_RESPONSE_BYTES", str(5 * 1024 * 1024)))
# A customer's new post joins their open case on the same account if it came within this many hours.
HUBBUB_THREAD_WINDOW_HOURS = float(os.environ.get("HUBBUB_THREAD_WINDOW_HOURS", "72"))
# A playbook's automatic acknowledgement answers only posts younger than this: an import of old
# posts or a backfill after an outage must not greet customers about last week.
HUBBUB_ACKNOWLEDGE_WITHIN_MINUTES = float(os.environ.get("HUBBUB_ACKNOWLEDGE_WITHIN_MINUTES", "60"))
# A new case whose routing confidence is below this goes to the triage queue of this department, so a
# person confirms its labels before the playbook routes it.
# Trained models also learn from the pretrained sentence encoder (hubbub/lib/encoder.py) when its
# weights are installed: better labels, 20-40 posts/s instead of 5,000. "0" trains n-grams only.
HUBBUB_TEXT_ENCODER = os.environ.get("HUBBUB_TEXT_ENCODER", "1") != "0"
HUBBUB_TRIAGE_CONFIDENCE = float(os.environ.get("HUBBUB_TRIAGE_CONFIDENCE", "0.25"))
HUBBUB_TRIAGE_DEPARTMENT = os.environ.get("HUBBUB_TRIAGE_DEPARTMENT", "customer-service")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"hubbub": {"handlers": ["console"], "level": os.environ.get("HUBBUB_LOG_LEVEL", "INFO")}},
}
