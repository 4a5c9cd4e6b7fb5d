"""Fixtures every layer of the tests needs: its own test databases, polling, the registry.

The layers have fixtures of their own: ``core/conftest.py`` (Plantons without a
database), ``runner/conftest.py`` (tasks, runners, signals and threads on the
database, shared with ``app/`` and ``integration/``) and
``integration/conftest.py`` (``manage.py`` subprocesses). Plain helpers are in
``support.py``, factory-boy factories in ``factories.py``.

* ``planton_registry`` empties the global task registry for one test and
  restores it afterwards, so that no test leaks tasks into another.
* Every task has a ``task_dispatched`` receiver that leaves its executions
  running (``a_receiver_for_every_task``); ``no_default_receiver`` removes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from django_planton.registry import TaskRegistry, registry

from . import support

# -- test databases of this run's own ------------------------------------------------


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Give this pytest run test databases nobody else uses.

    The example site names one SQLite test file, and a PostgreSQL server is
    often shared: two runs at once (a developer's and CI's, or two
    developers' in one tree) would otherwise drop each other's database
    mid-test. SQLite test files go to this run's temporary directory, other
    databases get the process id as a suffix.
    """
    from django.conf import settings

    for db_settings in settings.DATABASES.values():
        test = db_settings.setdefault("TEST", {})
        name = test.get("NAME")
        if db_settings["ENGINE"] == "django.db.backends.sqlite3":
            if name and name != ":memory:" and "mode=memory" not in name:
                test["NAME"] = str(tmp_path_factory.mktemp("test-db") / Path(name).name)
        else:
            test["NAME"] = f"{name or 'test_' + db_settings['NAME']}_{os.getpid()}"


# -- polling ---------------------------------------------------------------------


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    return support.wait_until


# -- the registry -----------------------------------------------------------------


@pytest.fixture
def planton_registry() -> Iterator[TaskRegistry]:
    """The global registry, emptied for this test; its own tasks come back afterwards."""
    saved = registry._tasks, registry._executors
    registry._tasks, registry._executors = {}, {}
    try:
        yield registry
    finally:
        registry._tasks, registry._executors = saved


@pytest.fixture(autouse=True)
def stop_the_default_executor() -> Iterator[None]:
    """Receivers a test left to the default executor (Threads) finish, their connections close.

    A test that runs cycles without a ``Runner`` (which stops its executors)
    would otherwise leave pool threads holding connections to the test database.
    """
    yield
    from django_planton.executors import default_executor

    executor = default_executor()
    executor.wait(30)
    executor.stop(30)


# -- a receiver for every task ------------------------------------------------------

_LEAVE_RUNNING = "tests.leave_running"


def _leave_running(sender: Any, **kwargs: Any) -> None:
    """Takes the execution and leaves it running, as a receiver that hands it on would."""


@pytest.fixture(autouse=True)
def a_receiver_for_every_task() -> Iterator[None]:
    """Connect a receiver to every sender of ``task_dispatched`` for the test.

    Most tests end their executions themselves, as a worker elsewhere would;
    without any receiver the runner warns about the task (once per process).
    """
    from django_planton.signals import task_dispatched

    task_dispatched.connect(_leave_running, dispatch_uid=_LEAVE_RUNNING)
    yield
    task_dispatched.disconnect(dispatch_uid=_LEAVE_RUNNING)


@pytest.fixture
def no_default_receiver(a_receiver_for_every_task: None) -> None:
    """Only the test's own ``task_dispatched`` receivers: a task may have none."""
    from django_planton.signals import task_dispatched

    task_dispatched.disconnect(dispatch_uid=_LEAVE_RUNNING)
