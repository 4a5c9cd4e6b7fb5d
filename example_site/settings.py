"""Settings of the example site, read from the environment through django-environ.

Everything has a safe development default, so ``python manage.py migrate``
works on a fresh clone with a SQLite file. Point ``DATABASE_URL`` at
PostgreSQL (``postgres://user@host:5432/name``) or MariaDB
(``mysql://user@host:3306/name``) to use those instead.
"""

from pathlib import Path

import django
import environ

BASE_DIR = Path(__file__).resolve().parent

env = environ.Env(
    DEBUG=(bool, True),
    SECRET_KEY=(str, "django-insecure-example-site-only-do-not-deploy"),
    DATABASE_URL=(str, f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
    EMAIL_URL=(str, "consolemail://"),
    ALLOWED_HOSTS=(list, ["localhost", "127.0.0.1", "[::1]"]),
)

DEBUG = env("DEBUG")
SECRET_KEY = env("SECRET_KEY")
ALLOWED_HOSTS = env("ALLOWED_HOSTS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_planton",
    "django_tasks_db",  # Django's tasks framework, stored in the database (db_worker)
    "example_site.accounts",
]

# Django's tasks framework (built into Django 6; the django-tasks backport on
# 5.2): django-planton's DjangoTasks executor enqueues there, and
# `python manage.py db_worker` runs the receivers.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_site.urls"

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

WSGI_APPLICATION = "example_site.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several runner processes share one SQLite file: wait for the write lock
    # instead of failing at once, and take it when a transaction begins.
    # WAL lets readers go on while a cycle writes, and synchronous=NORMAL
    # skips an fsync per commit that a scheduler (many small transactions)
    # would otherwise spend most of its time in.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test-db.sqlite3")}

if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # MariaDB ignores the partial index on running executions (a plain index
    # serves instead); django-planton's README explains.
    SILENCED_SYSTEM_CHECKS = ["models.W037"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

_EMAIL = env.email_url("EMAIL_URL")
if django.VERSION >= (6, 1):
    # Django 6.1 replaces the EMAIL_* settings with MAILERS.
    _SMTP_OPTIONS = {
        "host": "EMAIL_HOST",
        "port": "EMAIL_PORT",
        "username": "EMAIL_HOST_USER",
        "password": "EMAIL_HOST_PASSWORD",
        "use_tls": "EMAIL_USE_TLS",
        "use_ssl": "EMAIL_USE_SSL",
    }
    _OPTIONS = (
        {option: _EMAIL[name] for option, name in _SMTP_OPTIONS.items() if name in _EMAIL}
        if _EMAIL["EMAIL_BACKEND"].endswith("smtp.EmailBackend")
        else {}
    )
    MAILERS = {"default": {"BACKEND": _EMAIL["EMAIL_BACKEND"], "OPTIONS": _OPTIONS}}
else:
    vars().update(_EMAIL)
DEFAULT_FROM_EMAIL = "planton@example.com"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django_planton": {"handlers": ["console"], "level": "INFO"}},
}
