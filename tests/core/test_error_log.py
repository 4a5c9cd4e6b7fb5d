"""Errors in the log: a traceback once per distinct error, a batch's failure once."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from django_planton.core import CycleReport, ErrorLog, Planton, Task
from django_planton.errors import PlantonError

from ..support import wait_until
from .helpers import task, tiny_delay


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR]


def raised(error: Exception) -> Exception:
    try:
        raise error
    except Exception as caught:
        return caught


def test_the_traceback_once_then_one_line_with_a_count(caplog):
    log = ErrorLog()
    for _ in range(3):
        log.log(["mail"], raised(ConnectionError("server closed the connection")))
    records = errors(caplog)
    assert [r.exc_info is not None for r in records] == [True, False, False]
    assert records[0].getMessage() == "Task mail: ConnectionError: server closed the connection"
    assert records[2].getMessage() == (
        "Task mail: ConnectionError: server closed the connection "
        "(the same error 3 times; traceback logged the first time)"
    )
    assert records[2].repeats == 3


def test_distinct_errors_each_get_their_traceback(caplog):
    log = ErrorLog()
    log.log(["a"], raised(ValueError("one")))
    log.log(["a"], raised(ValueError("two")))
    log.log(["a"], raised(KeyError("one")))
    assert [r.exc_info is not None for r in errors(caplog)] == [True, True, True]


def test_an_error_not_seen_for_a_while_has_its_traceback_again(caplog):
    log = ErrorLog(forget_after=0.01)
    log.log(["a"], raised(ValueError("x")))
    time.sleep(0.02)
    log.log(["a"], raised(ValueError("x")))
    assert [r.exc_info is not None for r in errors(caplog)] == [True, True]


def test_our_own_errors_never_carry_a_traceback(caplog):
    ErrorLog().log(["a"], PlantonError("bad batch"))
    assert errors(caplog)[0].exc_info is None


class SharedFailure:
    """A batch runner whose every batch fails with one error, as a lost connection does."""

    def __init__(self) -> None:
        self.batches = 0
        self.error = OSError("connection refused")

    def first(self, task):
        return CycleReport(delay=0.0)

    def run(self, task, may_schedule):
        return CycleReport(delay=0.01, errors=(self.error,))

    def run_batch(self, tasks, may_schedule):
        self.batches += 1
        return [CycleReport(delay=60.0, errors=(self.error,)) for _ in tasks]


def test_a_batch_failure_is_logged_once_naming_its_tasks_and_each_task_hears_of_it(caplog):
    runner = SharedFailure()
    seen = []
    tasks = [Task(f"idle-{n}", lambda c: [], calculate_delay=tiny_delay) for n in range(4)]
    planton = Planton(tasks, cycle_runner=runner, on_error=seen.append, max_workers=1)
    planton.start()
    deadline = time.monotonic() + 5
    while len(seen) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    planton.stop(timeout=5)

    assert runner.batches >= 1
    assert sorted(event.task_name for event in seen) == [t.name for t in tasks]
    records = errors(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    message = records[0].getMessage()
    assert message.startswith("Tasks ")
    assert message.endswith("(one batch): OSError: connection refused")
    assert all(t.name in message for t in tasks)


def test_a_schedule_that_keeps_failing_has_one_traceback_then_a_line_per_attempt(
    make_planton, recorder, caplog
):
    message = f"the reports table is locked ({uuid.uuid4().hex[:8]})"  # new to the shared log

    def failing(context):
        raise RuntimeError(message)

    make_planton([task("reports", failing)])
    assert wait_until(lambda: len(recorder.errors("reports")) >= 5)

    records = [r for r in errors(caplog) if message in r.getMessage()][:5]
    assert [r.exc_info is not None for r in records] == [True, False, False, False, False]
    assert [r.getMessage() for r in records[:2]] == [
        f"Task reports: RuntimeError: {message}",
        f"Task reports: RuntimeError: {message} "
        "(the same error 2 times; traceback logged the first time)",
    ]
    assert [r.repeats for r in records[1:]] == [2, 3, 4, 5]


def test_the_fields_of_a_report_reach_the_record(caplog):
    ErrorLog().report(
        "A receiver failed", raised(ValueError("x")), extra={"execution_id": 7, "instruction": "a"}
    )
    [record] = errors(caplog)
    assert (record.execution_id, record.instruction) == (7, "a")
    assert record.getMessage() == "A receiver failed: ValueError: x"
