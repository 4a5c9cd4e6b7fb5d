"""Settings for ``manage.py`` subprocesses of the tests: the example site plus a test app.

The test app registers tasks in its ``AppConfig.ready()``, so that
``run_planton`` has something to schedule. The database comes from
``DATABASE_URL``, as for the example site; ``PLANTON_TEST_HOSTNAME`` names the
runner in the executions it writes, so that a test can tell processes apart;
``PLANTON_TEST_HOUSEKEEPING_INTERVAL`` sets the seconds between two rounds of
housekeeping (else django-planton's default).
"""

import ast
import os

from example_site import settings as _base

globals().update({name: value for name, value in vars(_base).items() if name.isupper()})

INSTALLED_APPS = [*_base.INSTALLED_APPS, "tests.integration.testapp.apps.PlantonTestAppConfig"]

PLANTON_HOSTNAME = os.environ.get("PLANTON_TEST_HOSTNAME") or None
if os.environ.get("PLANTON_TEST_HOUSEKEEPING_INTERVAL"):
    PLANTON_HOUSEKEEPING_INTERVAL = float(os.environ["PLANTON_TEST_HOUSEKEEPING_INTERVAL"])

# PLANTON_TEST_SET_<NAME>=<Python literal> sets the setting PLANTON_<NAME>, e.g.
# PLANTON_TEST_SET_CONNECT_TIMEOUT=2 or PLANTON_TEST_SET_SLOW_CYCLE_WARNING=0.5.
for _key, _value in os.environ.items():
    if _key.startswith("PLANTON_TEST_SET_"):
        globals()["PLANTON_" + _key.removeprefix("PLANTON_TEST_SET_")] = ast.literal_eval(_value)

# testapp_idle and testapp_tick never dispatch anything: they need no receiver.
SILENCED_SYSTEM_CHECKS = [*getattr(_base, "SILENCED_SYSTEM_CHECKS", []), "django_planton.W002"]

# PLANTON_TEST_DEFAULT_LOGGING=1: no LOGGING, as in a new project.
if os.environ.get("PLANTON_TEST_DEFAULT_LOGGING") == "1":
    globals().pop("LOGGING", None)
