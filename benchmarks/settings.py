"""Django settings of the benchmarks: the example site's, tuned for measuring.

* ``DATABASE_URL`` names the database (the orchestrator starts its own
  PostgreSQL and makes a SQLite file, and sets it for each run);
* ``DEBUG`` is off, so Django keeps no log of every query (that costs CPU and
  memory and would be measured along);
* logging is quiet: only errors, on stderr, which the orchestrator keeps in
  its log files;
* e-mail goes to memory; the benchmark receivers send none anyway;
* ``PLANTON_BENCH_PREPARED=1`` turns on psycopg's server-side binding and
  prepared statements, which Django leaves off by default (a variant of the
  drain runs with it and says so in the table).

The example site's own tasks and receivers stay registered but never run: the
benchmarks pass their own :class:`~django_planton.Task` objects (with their
own names) to the runner, and the example's receivers listen only to the
example's tasks.
"""

import environ

from example_site.settings import *  # noqa: F403

env = environ.Env()

DEBUG = False

# Registers the drained task in db_worker processes (the DjangoTasks drain).
INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks.benchapp"]  # noqa: F405

DATABASES = {"default": env.db("DATABASE_URL")}
_default = DATABASES["default"]
if _default["ENGINE"] == "django.db.backends.sqlite3":
    # As the example site does: wait for the write lock, take it at BEGIN.
    _default.setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
elif _default["ENGINE"] == "django.db.backends.postgresql" and env.bool(
    "PLANTON_BENCH_PREPARED", default=False
):
    _default.setdefault("OPTIONS", {}).update({"server_side_binding": True, "prepare_threshold": 2})

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": "ERROR"},
}

PLANTON_MAX_WORKERS = env.int("PLANTON_MAX_WORKERS", default=4)
PLANTON_HOSTNAME = "benchmark"
# Nothing is pruned while a run is measured.
PLANTON_KEEP_COMPLETED_EXECUTIONS = None
