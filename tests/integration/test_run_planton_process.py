"""``manage.py run_planton`` as a real process: exit codes, signals, the shutdown timeout.

These tests use ``tests/integration/settings_subprocess.py``: the example site
plus ``tests.integration.testapp``, whose ``ready()`` registers ``testapp_idle`` and
``testapp_claim_jobs``.
"""

from __future__ import annotations

import re
import signal
import sqlite3
from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from django_planton.models import MaintenanceTask

pytestmark = pytest.mark.django_db

# A subprocess commits on its own connection: on a database server, the test
# must be transactional so that the database is emptied afterwards.
in_a_process = pytest.mark.django_db(transaction=True)


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
        "Ran one cycle of 2 task(s) (testapp_idle, testapp_claim_jobs): 0 dispatched, "
        "0 succeeded, 0 failed, 0 terminated, 0 still running; 0 schedule(s) failed."
    ) in result.stdout


# What a new project's settings give: no LOGGING, so run_planton adds a handler of its own.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) \[MainThread\] ")


@in_a_process
def test_once_in_a_new_project_logs_a_failed_schedule_and_exits_1(manage, subprocess_database_url):
    result = manage(
        ["run_planton", "--once", "--task", "testapp_idle"],
        subprocess_database_url,
        PLANTON_TEST_DEFAULT_LOGGING="1",
        PLANTON_TEST_IDLE_RAISE="the reports table is locked",
    )

    assert result.returncode == 1, result.stderr
    assert result.stdout == (
        "Ran one cycle of 1 task(s) (testapp_idle): 0 dispatched, 0 succeeded, 0 failed, "
        "0 terminated, 0 still running; 1 schedule(s) failed.\n"
    )
    lines = result.stderr.splitlines()
    first = LOG_LINE.match(lines[0])
    assert first, result.stderr
    assert first["level"] == "ERROR"
    assert lines[0].endswith("Task testapp_idle: RuntimeError: the reports table is locked")
    assert lines.count("Traceback (most recent call last):") == 1
    assert lines[-1] == "CommandError: 1 schedule(s) failed; the log says why."


@in_a_process
def test_once_with_v0_prints_nothing_when_all_went_well(manage, subprocess_database_url):
    result = manage(
        ["run_planton", "--once", "-v", "0", "--task", "testapp_idle"],
        subprocess_database_url,
        PLANTON_TEST_DEFAULT_LOGGING="1",
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


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
    assert process.wait_for_stderr("Waiting up to 60 s for 1 cycle(s) in flight (testapp_idle)")
    assert process.wait(timeout=0.5) is None  # still waiting for the cycle in flight
    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=15) == 128 + signal.SIGTERM
    assert "Second SIGTERM: exiting now." in process.stderr
    assert "Stopped." not in process.stdout


def add_job(database_url: str, name: str) -> None:
    """A group for testapp_claim_jobs to claim, in the subprocess's database."""
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(Path(database_url.removeprefix("sqlite:///"))) as db:
            db.execute("INSERT INTO auth_group (name) VALUES (?)", [name])
        db.close()
        return
    Group.objects.create(name=name)


@in_a_process
def test_a_stop_says_it_waits_for_a_slow_receiver_then_gives_up_on_it(
    planton_process, subprocess_database_url
):
    add_job(subprocess_database_url, "job-slow")
    process = planton_process(
        ["run_planton", "--task", "testapp_claim_jobs", "--shutdown-timeout", "1"],
        subprocess_database_url,
        PLANTON_TEST_RECEIVER_SLEEP="30",
    )
    assert process.wait_for_output("testapp_claim_jobs: receiver sleeping"), process.stderr

    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=15) == 1
    [waiting] = [line for line in process.stderr.splitlines() if "Waiting up to" in line]
    assert waiting.endswith(" and 1 receiver(s) at work.") or waiting.endswith(
        "Waiting up to 1 s for 1 receiver(s) at work."
    ), waiting
    assert "Cycles still running after 1s: none, and 1 receiver(s) at work." in process.stderr


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

    assert process.wait(timeout=15) == 1
    assert "Cycles still running after 0.5s: testapp_idle (running " in process.stderr
    assert "with status 1" in process.stderr
    assert "Traceback" not in process.stderr
