"""What the log says about failures: receivers that raise, tasks nobody receives, schedules.

Each failure is one line naming the task, the execution and the instruction;
a traceback once per distinct error; never a memory address.
"""

from __future__ import annotations

import functools
import logging
import uuid

import pytest

from django_planton.executors import Inline
from django_planton.models import MaintenanceTaskExecution
from django_planton.signals import batch_dispatched, receiver_name, task_dispatched

pytestmark = pytest.mark.django_db(transaction=True)


def ours(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "django_planton" and r.levelno == level]


def unique(text: str) -> str:
    """The process's error log is shared by every test: a message no other test used."""
    return f"{text} ({uuid.uuid4().hex[:8]})"


class Broken:
    """A receiver that raises the same error for every execution."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __call__(self, sender, **kwargs):
        raise ConnectionError(self.message)

    def method(self, sender, **kwargs):
        raise ConnectionError(self.message)


def broken_function(sender, **kwargs):
    raise ConnectionError("function")


@pytest.fixture
def connect():
    connected = []

    def connect(receiver, sender):
        task_dispatched.connect(receiver, sender=sender, weak=False)
        connected.append((receiver, sender))

    yield connect
    for receiver, sender in connected:
        task_dispatched.disconnect(receiver, sender=sender)


def test_each_failed_receiver_is_one_line_with_task_execution_and_instruction(
    make_task, make_runner, scripted_schedule, connect, caplog
):
    task = make_task("mailer", scripted_schedule(["a", "b", "c"]), concurrency=3, executor=Inline())
    receiver = Broken(unique("the mail server went away"))
    connect(receiver.method, task)

    make_runner().run_once()

    executions = {e.instruction: e.pk for e in MaintenanceTaskExecution.objects.all()}
    assert sorted(executions) == ["a", "b", "c"]
    records = ours(caplog)
    assert [r.getMessage() for r in records] == [
        f"A receiver of task_dispatched failed for task mailer, execution {executions[name]}, "
        f"instruction {name!r} (tests.app.test_logging.Broken.method): "
        f"ConnectionError: {receiver.message}{repeat}"
        for name, repeat in [
            ("a", ""),
            ("b", " (the same error 2 times; traceback logged the first time)"),
            ("c", " (the same error 3 times; traceback logged the first time)"),
        ]
    ]
    # The traceback once, and Django's own send_robust() line never doubles ours.
    assert [r.exc_info is not None for r in records] == [True, False, False]
    assert not [r for r in caplog.records if r.name == "django.dispatch"]
    assert [(r.task_name, r.execution_id, r.instruction) for r in records] == [
        ("mailer", executions[name], name) for name in "abc"
    ]
    assert MaintenanceTaskExecution.objects.failed().count() == 3


@pytest.mark.parametrize(
    ("receiver", "name"),
    [
        (broken_function, "tests.app.test_logging.broken_function"),
        (Broken("x").method, "tests.app.test_logging.Broken.method"),
        (Broken("x"), "tests.app.test_logging.Broken"),
        (functools.partial(broken_function), "tests.app.test_logging.broken_function"),
        (lambda sender, **kwargs: None, "tests.app.test_logging.<lambda>"),
    ],
)
def test_a_receiver_is_named_by_its_dotted_name_never_its_address(receiver, name):
    assert receiver_name(receiver) == name
    assert "0x" not in receiver_name(receiver)


def test_a_task_without_receivers_is_warned_about_once_and_its_executions_run_on(
    make_task, make_runner, scripted_schedule, no_default_receiver, caplog
):
    # Something else may end them (a process that works on the running
    # executions); the warning says what to connect otherwise.
    name = unique("forgotten").replace(" ", "-")
    make_task(name, scripted_schedule(["a", "b"], ["c"]), concurrency=3, delay=0.0)
    runner = make_runner()

    runner.run_once()
    runner.run_once()

    executions = MaintenanceTaskExecution.objects.order_by("instruction")
    assert [(e.instruction, e.outcome) for e in executions] == [
        ("a", "running"),
        ("b", "running"),
        ("c", "running"),
    ]
    [warning] = [r for r in ours(caplog, logging.WARNING) if name in r.getMessage()]
    assert warning.getMessage().startswith(f"Task {name} has no task_dispatched receiver")
    assert "task_dispatched.connect(receiver, sender=<the task>)" in warning.getMessage()
    assert warning.task_name == name


def test_a_receiver_for_every_sender_counts(
    make_task, make_runner, scripted_schedule, no_default_receiver, caplog
):
    make_task("heard", scripted_schedule(["a"]))
    heard = []

    def anyone(sender, execution, **kwargs):
        heard.append(execution.instruction)

    task_dispatched.connect(anyone, weak=False)
    try:
        make_runner().run_once()
    finally:
        task_dispatched.disconnect(anyone)

    assert heard == ["a"]
    assert MaintenanceTaskExecution.objects.get().is_running
    assert not ours(caplog, logging.WARNING)


def failing_always(message: str):
    def schedule(context):
        raise RuntimeError(message)

    return schedule


def test_a_schedule_that_keeps_failing_logs_its_traceback_once_then_a_line_per_attempt(
    make_task, make_runner, wait_until, caplog
):
    message = unique("the report table is locked")
    make_task("reports", failing_always(message), delay=0.01)
    runner = make_runner(start=True)

    assert wait_until(lambda: len(ours(caplog)) >= 4)
    runner.stop(timeout=10)

    records = [r for r in ours(caplog) if message in r.getMessage()]
    assert len(records) == len(ours(caplog))
    assert [r.exc_info is not None for r in records] == [True] + [False] * (len(records) - 1)
    assert records[0].getMessage() == f"Task reports: RuntimeError: {message}"
    assert records[3].getMessage() == (
        f"Task reports: RuntimeError: {message} "
        "(the same error 4 times; traceback logged the first time)"
    )


def test_a_task_whose_batches_have_a_receiver_keeps_its_executions_running(
    make_task, make_runner, scripted_schedule, no_default_receiver, caplog
):
    # A batch_dispatched receiver alone hands the batch on; whoever takes it
    # ends the executions, so none is failed for want of a task_dispatched receiver.
    task = make_task("batched", scripted_schedule(["a", "b"]), concurrency=2)
    batches = []

    def take_batch(sender, executions, **kwargs):
        batches.append([execution.instruction for execution in executions])

    batch_dispatched.connect(take_batch, sender=task, weak=False)
    try:
        make_runner().run_once()
    finally:
        batch_dispatched.disconnect(take_batch, sender=task)

    assert batches == [["a", "b"]]
    assert [e.outcome for e in MaintenanceTaskExecution.objects.all()] == ["running"] * 2
    assert not [r for r in ours(caplog, logging.WARNING) if "batched" in r.getMessage()]
