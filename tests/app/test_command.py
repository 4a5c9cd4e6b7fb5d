"""``manage.py run_planton`` in-process, through ``call_command``.

Run as a real process in ``tests/integration/test_run_planton_process.py``.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection

from django_planton.management.commands.run_planton import say_what_stopping_waits_for
from django_planton.models import MaintenanceTask, MaintenanceTaskExecution
from django_planton.signals import task_dispatched

# The executions are dispatched after the cycle commits.
pytestmark = pytest.mark.django_db(transaction=True)


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
        "Ran one cycle of 2 task(s) (alpha, beta): 2 dispatched, 0 succeeded, 0 failed, "
        "0 terminated, 2 still running; 0 schedule(s) failed."
    )
    assert sorted(MaintenanceTask.objects.values_list("nid", flat=True)) == ["alpha", "beta"]
    assert sorted(MaintenanceTaskExecution.objects.values_list("instruction", flat=True)) == [
        "1",
        "2",
    ]


def test_once_counts_tasks_with_errors(make_task, scripted_schedule):
    make_task("good", scripted_schedule(["1"]))
    make_task("bad", failing)
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("run_planton", "--once", stdout=out, stderr=StringIO())
    assert "1 dispatched" in out.getvalue()
    assert "; 1 schedule(s) failed." in out.getvalue()
    assert str(raised.value) == "1 schedule(s) failed; the log says why."
    assert raised.value.returncode == 1
    assert MaintenanceTask.objects.get(nid="bad").last_error.split("\n")[0] == (
        "RuntimeError: cannot schedule"
    )


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
    assert ": 0 dispatched," in output
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


def test_verbosity_sets_the_log_level_for_the_command_only(make_task):
    logger = logging.getLogger("django_planton")
    levels = []

    def note_level(context):
        levels.append(logger.level)
        return []

    make_task("alpha", note_level, delay=0.0)
    before = logger.level
    run_planton("--once", "--verbosity", "0")
    run_planton("--once", "--verbosity", "2")
    assert levels == [logging.ERROR, logging.DEBUG]
    assert logger.level == before


# -- what --once says, and its exit status ------------------------------------------------


def run_planton_failing(*args: str) -> tuple[str, CommandError]:
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("run_planton", *args, stdout=out, stderr=StringIO())
    return out.getvalue(), raised.value


@pytest.fixture
def mail_task(make_task, scripted_schedule):
    """Instructions ``ok`` (completed), ``bad`` (its receiver raises), ``later`` (left running).

    The error is new to the process's error log, so its traceback is logged.
    """
    task = make_task("mail", scripted_schedule(["ok", "bad", "later"]), concurrency=3)
    message = f"no such mailbox ({uuid.uuid4().hex[:8]})"

    def receiver(sender, execution, **kwargs):
        if execution.instruction == "bad":
            raise ValueError(message)
        if execution.instruction == "ok":
            execution.complete()

    task_dispatched.connect(receiver, sender=task, weak=False)
    yield task
    task_dispatched.disconnect(receiver, sender=task)


def test_once_says_what_became_of_each_execution_and_fails_with_status_1(mail_task, make_task):
    make_task("broken", failing)

    output, error = run_planton_failing("--once")

    assert output.strip() == (
        "Ran one cycle of 2 task(s) (broken, mail): 3 dispatched, 1 succeeded, 1 failed, "
        "0 terminated, 1 still running; 1 schedule(s) failed."
    )
    assert str(error) == "1 schedule(s) and 1 of 3 execution(s) failed; the log says why."
    assert error.returncode == 1
    by_outcome = MaintenanceTaskExecution.objects
    assert [e.instruction for e in by_outcome.succeeded()] == ["ok"]
    assert [e.instruction for e in by_outcome.failed()] == ["bad"]
    assert [e.instruction for e in by_outcome.running()] == ["later"]


def test_once_with_v0_prints_only_what_failed(mail_task):
    output, error = run_planton_failing("--once", "-v", "0")
    assert output == ""
    assert str(error) == "1 of 3 execution(s) failed; the log says why."


def test_once_with_v0_prints_nothing_when_all_went_well(make_task, scripted_schedule):
    task = make_task("quiet", scripted_schedule(["1"]))

    def complete(sender, execution, **kwargs):
        execution.complete()

    task_dispatched.connect(complete, sender=task, weak=False)
    try:
        assert run_planton("--once", "-v", "0") == ""
    finally:
        task_dispatched.disconnect(complete, sender=task)
    assert MaintenanceTaskExecution.objects.succeeded().count() == 1


def test_once_leaves_an_execution_nobody_receives_running(
    make_task, scripted_schedule, no_default_receiver
):
    make_task("nobody", scripted_schedule(["1"]))
    output = run_planton("--once")
    assert ": 1 dispatched, 0 succeeded, 0 failed, 0 terminated, 1 still running;" in output


# -- a handler when the project configured none -------------------------------------------

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) \[(?P<thread>[^]]+)\] ")


@contextmanager
def fresh_logging() -> Iterator[logging.Logger]:
    """As in a new project: no handler for django_planton, none on the root logger.

    Inside the test: pytest puts its own handler on the root logger for each phase.
    """
    root, package = logging.getLogger(), logging.getLogger("django_planton")
    saved = root.handlers, package.handlers
    root.handlers, package.handlers = [], []
    try:
        yield package
    finally:
        root.handlers, package.handlers = saved


def test_a_fresh_project_gets_a_handler_on_stderr_for_the_command(mail_task, capsys):
    with fresh_logging() as logger:
        run_planton_failing("--once", "-v", "2")
        assert logger.handlers == []  # removed when the command ended

    lines = capsys.readouterr().err.splitlines()
    assert LINE.match(lines[0]), lines
    debug = [line for line in lines if " DEBUG [MainThread] " in line]
    assert debug == [debug[0]]
    assert LINE.match(debug[0])
    assert debug[0].endswith("Task mail dispatched 3 instruction(s): ok, bad, later")
    [error] = [line for line in lines if " ERROR [" in line]
    assert "A receiver of task_dispatched failed for task mail, execution " in error
    assert lines.count("Traceback (most recent call last):") == 1


def test_v0_prints_errors_only(mail_task, capsys):
    with fresh_logging():
        run_planton_failing("--once", "-v", "0")
    levels = [m["level"] for m in map(LINE.match, capsys.readouterr().err.splitlines()) if m]
    assert levels == ["ERROR"]


def test_the_projects_own_handler_is_used_alone(mail_task, capsys):
    logger = logging.getLogger("django_planton")
    before = list(logger.handlers)
    assert before  # the example site's LOGGING has one
    run_planton_failing("--once", "-v", "2")
    assert logger.handlers == before
    assert not [line for line in capsys.readouterr().err.splitlines() if LINE.match(line)]


# -- stopping -------------------------------------------------------------------------------


def test_stopping_says_which_cycles_and_receivers_it_waits_for(
    make_task, make_runner, scripted_schedule, wait_until, caplog
):
    release = threading.Event()
    in_schedule = threading.Event()

    working = threading.Event()

    def slow_schedule(context):
        if working.is_set():  # the first cycles may run together, in one batch
            in_schedule.set()
            release.wait(10)
        return []

    make_task("slow_plan", slow_schedule, delay=0.01)
    mail = make_task("slow_mail", scripted_schedule(["1"]))

    def slow_receiver(sender, execution, **kwargs):
        working.set()
        release.wait(10)
        execution.complete()

    task_dispatched.connect(slow_receiver, sender=mail, weak=False)
    runner = make_runner(start=True)
    try:
        assert working.wait(5)
        assert in_schedule.wait(5)
        caplog.set_level(logging.INFO, logger="django_planton")
        say_what_stopping_waits_for(runner, 30.0)
    finally:
        release.set()
        task_dispatched.disconnect(slow_receiver, sender=mail)
    [message] = [r.getMessage() for r in caplog.records if r.name == "django_planton"]
    # slow_mail's quiet attempts may share slow_plan's batch, so the cycles in
    # flight name slow_plan, and maybe slow_mail beside it.
    assert re.fullmatch(
        r"Waiting up to 30 s for (1 cycle\(s\) in flight \(slow_plan\)|2 cycle\(s\) in "
        r"flight \((slow_plan, slow_mail|slow_mail, slow_plan)\)) and 1 receiver\(s\) at work\.",
        message,
    ), message
    assert runner.stop(timeout=10)


def test_stopping_with_nothing_in_flight_says_nothing(
    make_task, make_runner, scripted_schedule, wait_until, caplog
):
    schedule = scripted_schedule()
    make_task("idle", schedule, delay=60.0)
    runner = make_runner(start=True)
    assert wait_until(lambda: len(schedule.contexts) == 1 and not runner.cycles_in_flight())
    caplog.set_level(logging.INFO, logger="django_planton")
    say_what_stopping_waits_for(runner, 30.0)
    assert not [r for r in caplog.records if r.name == "django_planton"]
