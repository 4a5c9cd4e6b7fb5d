"""``manage.py run_planton`` in-process, through ``call_command``.

Run as a real process in ``tests/integration/test_run_planton_process.py``.
"""

from __future__ import annotations

import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection

from django_planton.models import MaintenanceTask, MaintenanceTaskExecution

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _restore_logger_level():
    # run_planton sets the level of the "django_planton" logger from --verbosity.
    logger = logging.getLogger("django_planton")
    level = logger.level
    yield
    logger.setLevel(level)


def run_planton(*args: str) -> str:
    out = StringIO()
    call_command("run_planton", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def failing(context):
    raise RuntimeError("cannot schedule")


# -- in-process ------------------------------------------------------------------------


def test_once_runs_due_tasks_and_prints_a_summary(make_task, scripted_schedule):
    make_task("alpha", scripted_schedule(["1", "2"]), concurrency=2)
    make_task("beta")

    output = run_planton("--once")

    assert output.strip() == (
        "Ran one cycle of 2 task(s) (alpha, beta): 2 instruction(s) dispatched, 0 with errors."
    )
    assert sorted(MaintenanceTask.objects.values_list("nid", flat=True)) == ["alpha", "beta"]
    assert sorted(MaintenanceTaskExecution.objects.values_list("instruction", flat=True)) == [
        "1",
        "2",
    ]


def test_once_counts_tasks_with_errors(make_task, scripted_schedule):
    make_task("good", scripted_schedule(["1"]))
    make_task("bad", failing)
    output = run_planton("--once")
    assert "1 instruction(s) dispatched, 1 with errors." in output
    assert MaintenanceTask.objects.get(nid="bad").last_error == "RuntimeError: cannot schedule"


def test_once_with_task_runs_only_that_task(make_task, scripted_schedule):
    alpha = scripted_schedule(["1"])
    beta = scripted_schedule(["2"])
    make_task("alpha", alpha)
    make_task("beta", beta)

    output = run_planton("--once", "--task", "beta")

    assert "Ran one cycle of 1 task(s) (beta)" in output
    assert len(alpha.contexts) == 0
    assert len(beta.contexts) == 1
    assert list(MaintenanceTaskExecution.objects.values_list("instruction", flat=True)) == ["2"]


def test_once_skips_a_task_that_is_not_due(make_task, scripted_schedule):
    schedule = scripted_schedule(["1"])
    make_task("alpha", schedule, delay=60.0)
    run_planton("--once")
    output = run_planton("--once")
    assert "0 instruction(s) dispatched" in output
    assert len(schedule.contexts) == 1


def test_unknown_task_names_the_registered_ones(make_task):
    make_task("alpha")
    make_task("beta")
    with pytest.raises(CommandError) as raised:
        run_planton("--once", "--task", "alpha", "--task", "gamma")
    assert str(raised.value) == "Unknown task gamma; registered: alpha, beta."
    assert not MaintenanceTask.objects.exists()


def test_no_registered_tasks_is_an_error(planton_registry):
    with pytest.raises(CommandError, match="No tasks are registered"):
        run_planton("--once")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "must be at least 1"),
        (["--workers", "x"], "is not a whole number"),
        (["--workers", "-3"], "must be at least 1"),
        (["--shutdown-timeout", "0"], "must be a positive number"),
        (["--shutdown-timeout", "inf"], "must be a positive number"),
        (["--shutdown-timeout", "soon"], "is not a number"),
    ],
)
def test_bad_options_are_command_errors(make_task, args, message):
    make_task("alpha")
    with pytest.raises(CommandError, match=message):
        run_planton("--once", *args)


def test_unknown_database_alias_is_an_error(make_task):
    make_task("alpha")
    with pytest.raises(CommandError, match="Unknown database alias 'elsewhere'"):
        run_planton("--once", "--database", "elsewhere")


def test_missing_tables_ask_for_migrate(make_task, monkeypatch):
    make_task("alpha")
    monkeypatch.setattr(connection.introspection, "table_names", lambda *args, **kwargs: [])
    with pytest.raises(CommandError, match="migrate"):
        run_planton("--once")


def test_an_unreachable_database_is_a_command_error(make_task, monkeypatch):
    make_task("alpha")

    def unreachable(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection.introspection, "table_names", unreachable)
    with pytest.raises(CommandError, match="Cannot reach database 'default': connection refused"):
        run_planton("--once")


def test_verbosity_sets_the_log_level(make_task):
    make_task("alpha")
    logger = logging.getLogger("django_planton")
    run_planton("--once", "--verbosity", "0")
    assert logger.level == logging.ERROR
    run_planton("--once", "--verbosity", "2")
    assert logger.level == logging.DEBUG
