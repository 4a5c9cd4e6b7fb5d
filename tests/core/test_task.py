"""Building tasks and Plantons: defaults, validation, and no user code called on construction."""

from __future__ import annotations

import pytest

from django_planton.core import DEFAULT_DELAY, Planton, Task, compute_delay, compute_limit
from django_planton.errors import (
    DuplicateTaskNameError,
    InvalidTaskConfigurationError,
    PlantonError,
)

from ..support import no_active, nothing
from .helpers import Counter

# -- construction ----------------------------------------------------------------


def test_task_defaults():
    t = Task("t", nothing)
    assert t.name == "t"
    assert t.schedule is nothing
    assert t.concurrency == 1
    assert t.calculate_delay is None
    assert t.calculate_limit is None
    assert compute_delay(t, 0) == (1.0, None)
    assert compute_delay(t, 7) == (1.0, None)
    assert DEFAULT_DELAY == 1.0
    assert compute_limit(t, 1, []) == 1
    assert compute_limit(Task("u", nothing, concurrency=5), 5, ["a", "b"]) == 3


def test_tasks_compare_by_identity():
    assert Task("t", nothing) != Task("t", nothing)
    first = Task("t", nothing)
    assert first == first


def test_duplicate_task_names_raise():
    with pytest.raises(DuplicateTaskNameError) as info:
        Planton(
            tasks=[Task("a", nothing), Task("b", nothing), Task("a", nothing)],
            get_active_task_instructions=no_active,
        )
    assert info.value.duplicate_task_name == "a"
    assert info.value.code == "DUPLICATE_TASK_NAME"
    assert isinstance(info.value, PlantonError)


@pytest.mark.parametrize("concurrency", [0, -1, -100])
def test_concurrency_below_one_raises(concurrency):
    with pytest.raises(
        InvalidTaskConfigurationError, match=r"^Task concurrency must be greater than 0\.$"
    ) as info:
        Planton(
            tasks=[Task("a", nothing, concurrency=concurrency)],
            get_active_task_instructions=no_active,
        )
    assert info.value.code == "INVALID_TASK_CONFIGURATION"
    assert info.value.task_name == "a"
    assert isinstance(info.value, PlantonError)


@pytest.mark.parametrize("concurrency", [1.5, "2", True, None])
def test_non_integer_concurrency_raises(concurrency):
    with pytest.raises(InvalidTaskConfigurationError):
        Task("a", nothing, concurrency=concurrency)


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_task_name_raises(name):
    with pytest.raises(PlantonError):
        Planton(tasks=[Task(name, nothing)], get_active_task_instructions=no_active)


@pytest.mark.parametrize(
    "kwargs",
    [{"schedule": None}, {"calculate_delay": 5}, {"calculate_limit": "x"}],
    ids=["schedule", "calculate_delay", "calculate_limit"],
)
def test_non_callable_task_options_raise(kwargs):
    options = {"name": "a", "schedule": nothing, **kwargs}
    with pytest.raises(InvalidTaskConfigurationError) as info:
        Task(**options)
    assert info.value.task_name == "a"


def test_planton_rejects_non_tasks_and_missing_active_source():
    with pytest.raises(PlantonError):
        Planton(tasks=["not a task"], get_active_task_instructions=no_active)
    with pytest.raises(PlantonError):
        Planton(tasks=[Task("a", nothing)])


def test_planton_with_valid_tasks_keeps_them_in_order():
    tasks = [Task("b", nothing), Task("a", nothing, concurrency=3)]
    planton = Planton(tasks=tasks, get_active_task_instructions=no_active)
    assert planton.tasks == tuple(tasks)
    assert not planton.is_running


def test_constructing_a_planton_calls_no_user_code():
    calls = Counter()
    Planton(
        tasks=[Task("a", calls, calculate_delay=calls, calculate_limit=calls)],
        get_active_task_instructions=calls,
        on_task=calls,
        on_error=calls,
    )
    assert calls.value == 0
