"""``manage.py run_planton``: in-process through call_command, and as a real process.

The subprocess tests use ``tests/settings_subprocess.py``: the example site
plus ``tests.testapp``, whose ``ready()`` registers ``testapp_idle`` and
``testapp_claim_jobs``.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection

from django_planton.models import MaintenanceTask, MaintenanceTaskExecution

pytestmark = pytest.mark.django_db

# A subprocess commits on its own connection: on a database server, the test
# must be transactional so that the database is emptied afterwards.
in_a_process = pytest.mark.django_db(transaction=True)


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


# -- as a real process -----------------------------------------------------------------------


def assert_clean_failure(result, *expected: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("value", "message"), [("0", "'0' must be at least 1"), ("x", "'x' is not a whole number")]
)
def test_bad_workers_exit_non_zero_without_a_traceback(manage, tmp_path, value, message):
    result = manage(["run_planton", "--workers", value], f"sqlite:///{tmp_path / 'unused.db'}")
    assert_clean_failure(result, "--workers", message)
    assert result.returncode == 2  # argparse's usage error


def test_no_migrations_applied_asks_for_migrate(manage, tmp_path):
    result = manage(["run_planton", "--once"], f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert_clean_failure(result, "CommandError", "python manage.py migrate")


@in_a_process
def test_unknown_task_in_a_process_lists_the_registered_ones(manage, subprocess_database_url):
    result = manage(["run_planton", "--once", "--task", "nope"], subprocess_database_url)
    assert_clean_failure(result, "Unknown task nope; registered:", "testapp_idle")


@in_a_process
def test_once_in_a_process(manage, subprocess_database_url):
    result = manage(
        ["run_planton", "--once", "--task", "testapp_idle", "--task", "testapp_claim_jobs"],
        subprocess_database_url,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "Ran one cycle of 2 task(s) (testapp_idle, testapp_claim_jobs): "
        "0 instruction(s) dispatched, 0 with errors."
    ) in result.stdout


def last_attempted(database_url: str, name: str):
    """Read the task's row from the subprocess's database, whichever it is."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        with sqlite3.connect(path) as db:
            found = db.execute(
                "SELECT last_attempted_at FROM maintenance_task WHERE nid = ?", [name]
            ).fetchone()
        db.close()
        return found and found[0]
    task = MaintenanceTask.objects.filter(nid=name).first()
    return task and task.last_attempted_at


@in_a_process
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_runner_gracefully(
    planton_process, subprocess_database_url, wait_until, signum
):
    process = planton_process(
        ["run_planton", "--task", "testapp_idle", "--shutdown-timeout", "10"],
        subprocess_database_url,
    )
    assert process.wait_for_output("Scheduling 1 task(s): testapp_idle."), (
        process.stdout + process.stderr
    )
    # It works: the idle task's row is attempted over and over.
    assert wait_until(lambda: last_attempted(subprocess_database_url, "testapp_idle"), timeout=10)

    process.send_signal(signum)

    assert process.wait(timeout=15) == 0, process.stderr
    assert process.stdout.rstrip().endswith("Stopped."), process.stdout
    assert "Traceback" not in process.stderr, process.stderr
    assert f"{signal.Signals(signum).name} received" in process.stderr


@in_a_process
def test_a_second_signal_exits_at_once(planton_process, subprocess_database_url):
    process = planton_process(
        ["run_planton", "--task", "testapp_idle", "--shutdown-timeout", "60"],
        subprocess_database_url,
        PLANTON_TEST_IDLE_BLOCK="60",
    )
    assert process.wait_for_output("testapp_idle: blocking"), process.stdout + process.stderr

    process.send_signal(signal.SIGTERM)
    assert process.wait_for_stderr("SIGTERM received"), process.stderr
    assert process.wait(timeout=0.5) is None  # still waiting for the cycle in flight
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=15) == 128 + signal.SIGTERM
    assert "Second SIGTERM: exiting now." in process.stderr
    assert "Stopped." not in process.stdout


@in_a_process
def test_the_shutdown_timeout_gives_up_on_a_cycle_in_flight(
    planton_process, subprocess_database_url
):
    process = planton_process(
        ["run_planton", "--task", "testapp_idle", "--shutdown-timeout", "0.5"],
        subprocess_database_url,
        PLANTON_TEST_IDLE_BLOCK="60",
    )
    assert process.wait_for_output("testapp_idle: blocking"), process.stdout + process.stderr

    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=15) == 0
    assert "Cycles still running after 0.5s" in process.stderr
    assert "Traceback" not in process.stderr
