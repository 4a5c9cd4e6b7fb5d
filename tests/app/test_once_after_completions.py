"""``run_planton --once`` right after executions end, and its lines about tasks not attempted."""

from __future__ import annotations

import itertools
import logging
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from django_planton.models import MaintenanceTask, MaintenanceTaskExecution
from django_planton.sql import read_database_now

# The executions are dispatched after the cycle commits.
pytestmark = pytest.mark.django_db(transaction=True)

EVERY_SLOT_TAKEN = "  one: not attempted, every slot taken (1 running): due when one frees."


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


def once(name: str = "one") -> list[str]:
    return run_planton("--once", "--task", name).splitlines()


def numbered():
    numbers = itertools.count(1)
    return lambda context: [str(next(numbers)) for _ in range(context.limit)]


def headline(dispatched: int, name: str = "one") -> str:
    """The summary's first line; each receiver leaves its execution running."""
    return (
        f"Ran one cycle of 1 task(s) ({name}): {dispatched} dispatched, 0 succeeded, 0 failed, "
        f"0 terminated, {dispatched} still running; 0 schedule(s) failed."
    )


def running(name: str = "one"):
    return MaintenanceTaskExecution.objects.for_task(name).running()


@pytest.fixture
def one_slot(make_task):
    """A registered task of concurrency 1 that always finds work, due again at once."""
    return make_task("one", numbered(), concurrency=1, delay=0.0)


def test_once_dispatches_again_right_after_the_execution_completes(one_slot):
    assert once() == [headline(1)]
    assert running().count() == 1

    # Every slot taken: nothing to dispatch until the execution ends.
    assert once()[0] == headline(0)
    assert once() == [headline(0), EVERY_SLOT_TAKEN]
    assert running().count() == 1

    running().get().complete()

    assert once() == [headline(1)]
    assert list(running().values_list("instruction", flat=True)) == ["2"]


def test_the_second_once_says_every_slot_is_taken(one_slot):
    once()

    assert once() == [headline(0), EVERY_SLOT_TAKEN]


def test_once_after_an_ending_that_sent_no_signal(one_slot):
    once()
    once()
    assert MaintenanceTask.objects.get(nid="one").saturated_active_count == 1
    # Ended by another process with a plain UPDATE: no signal reaches this one.
    running().update(state="COMPLETED", ended_at=read_database_now("default"))

    assert once() == [headline(1)]


def test_once_after_a_bulk_completion(make_task):
    make_task("two", numbered(), concurrency=2, delay=0.0)
    assert once("two") == [headline(2, "two")]
    once("two")
    MaintenanceTaskExecution.objects.for_task("two").complete()

    assert once("two") == [headline(2, "two")]


def test_once_names_the_time_a_task_is_not_due_until(make_task):
    make_task("later", numbered(), delay=3600.0)
    assert once("later") == [headline(1, "later")]
    due_at = MaintenanceTask.objects.get(nid="later").next_attempt_at

    lines = once("later")

    assert lines[0] == headline(0, "later")
    assert lines[1] == (
        f"  later: not attempted, not due until {due_at.isoformat(sep=' ', timespec='seconds')}."
    )
    assert re.fullmatch(
        r"  later: not attempted, not due until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00\.", lines[1]
    )


def test_a_not_due_task_is_not_made_due_by_an_ending(make_task):
    # Only a task whose attempt found every slot taken is due when one frees:
    # one that dispatched keeps its back-off.
    make_task("later", numbered(), delay=3600.0)
    once("later")
    running("later").get().complete()

    lines = once("later")

    assert lines[0] == headline(0, "later")
    assert lines[1].startswith("  later: not attempted, not due until ")


def test_once_says_a_paused_task_was_not_attempted(make_task):
    make_task("one", numbered())
    once()
    MaintenanceTask.objects.filter(nid="one").update(is_paused=True, next_attempt_at=None)

    assert once() == [headline(0), "  one: not attempted, paused."]


def test_once_lists_only_the_tasks_not_attempted(make_task):
    make_task("busy", numbered(), delay=0.0)
    make_task("free", lambda context: [], delay=0.0)
    make_task("later", numbered(), delay=3600.0)
    run_planton("--once")
    run_planton("--once")
    MaintenanceTask.objects.filter(nid="later").update(
        next_attempt_at=read_database_now("default") + timedelta(hours=1)
    )

    lines = run_planton("--once").splitlines()

    assert lines[0] == (
        "Ran one cycle of 3 task(s) (busy, free, later): 0 dispatched, 0 succeeded, 0 failed, "
        "0 terminated, 0 still running; 0 schedule(s) failed."
    )
    assert lines[1:] == [
        "  busy: not attempted, every slot taken (1 running): due when one frees.",
        lines[2],
    ]
    assert lines[2].startswith("  later: not attempted, not due until ")
