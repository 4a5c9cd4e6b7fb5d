"""Settings of the stress run's processes: the example site plus the stress app.

The stress run sets, per process: ``DATABASE_URL`` (its own PostgreSQL),
``STRESS_DIR`` (logs, sent-mail records, hang flags), ``STRESS_RUNNER`` (this
process's name, e.g. ``r2.g1``: runner 2, first generation; it is also the
executions' ``hostname``) and ``STRESS_HANG_NAME`` (``r2``: the hang flag this
process obeys). Behind PgBouncer, ``STRESS_LISTEN_URL`` may name a database
that reaches PostgreSQL directly: it becomes the ``direct`` alias, and the
runner's listener uses it (``PLANTON_LISTEN_DATABASE``).
"""

import os
from pathlib import Path

import django
import environ

from example_site import settings as _base
from stress.config import SLOW_CYCLE_WARNING

globals().update({name: value for name, value in vars(_base).items() if name.isupper()})

INSTALLED_APPS = [*_base.INSTALLED_APPS, "stress.stressapp"]

STRESS_DIR = os.environ.get("STRESS_DIR", "/tmp/planton-stress")
STRESS_RUNNER = os.environ.get("STRESS_RUNNER", "setup")
STRESS_HANG_NAME = os.environ.get("STRESS_HANG_NAME", STRESS_RUNNER)

_MAIL_BACKEND = "stress.stressapp.mail.RecordingEmailBackend"
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": _MAIL_BACKEND, "OPTIONS": {}}}
else:
    EMAIL_BACKEND = _MAIL_BACKEND

PLANTON_HOSTNAME = STRESS_RUNNER
# Every execution is kept: the checks read them all at the end.
PLANTON_KEEP_COMPLETED_EXECUTIONS = None
# Overdue executions (the kill scenario) are ended within a second of their deadline.
PLANTON_HOUSEKEEPING_INTERVAL = 1.0
# The fault scenarios block a schedule and stall the database for a few seconds only.
PLANTON_SLOW_CYCLE_WARNING = SLOW_CYCLE_WARNING

_listen_url = os.environ.get("STRESS_LISTEN_URL")
if _listen_url:
    DATABASES = {**_base.DATABASES, "direct": environ.Env.db_url_config(_listen_url)}
    PLANTON_LISTEN_DATABASE = "direct"

_log_dir = Path(STRESS_DIR) / "logs"
_log_dir.mkdir(parents=True, exist_ok=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"}
    },
    "handlers": {
        "file": {
            "class": "logging.FileHandler",
            "filename": str(_log_dir / f"{STRESS_RUNNER}.log"),
            "formatter": "plain",
        }
    },
    "root": {"handlers": ["file"], "level": "WARNING"},
    "loggers": {
        "django_planton": {"handlers": ["file"], "level": "INFO", "propagate": False},
        "example_site": {"handlers": ["file"], "level": "INFO", "propagate": False},
        "stress": {"handlers": ["file"], "level": "INFO", "propagate": False},
    },
}
