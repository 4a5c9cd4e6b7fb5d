"""The task registry that ``run_planton`` reads."""

from __future__ import annotations

import pytest

import django_planton
from django_planton import DuplicateTaskNameError, PlantonError, Task
from django_planton.registry import TaskRegistry, registry


def nothing(context):
    return []


def test_register_returns_the_task_and_lists_it(planton_registry):
    task = Task(name="send_email", schedule=nothing)
    assert django_planton.register(task) is task
    assert "send_email" in planton_registry
    assert planton_registry.get("send_email") is task
    assert planton_registry.names() == ["send_email"]
    assert len(planton_registry) == 1
    assert list(planton_registry) == [task]


def test_decorator_returns_the_task_named_after_the_function(planton_registry):
    @django_planton.task(concurrency=3, calculate_delay=lambda attempt_number: 2.0)
    def purge_accounts(context):
        return []

    assert isinstance(purge_accounts, Task)
    assert purge_accounts.name == "purge_accounts"
    assert purge_accounts.concurrency == 3
    assert purge_accounts.calculate_delay(5) == 2.0
    assert purge_accounts.schedule(None) == []
    assert planton_registry.get("purge_accounts") is purge_accounts


def test_decorator_takes_an_explicit_name(planton_registry):
    @django_planton.task(name="emails.send")
    def send(context):
        return []

    assert send.name == "emails.send"
    assert planton_registry.names() == ["emails.send"]


def test_a_second_task_under_a_taken_name_raises(planton_registry):
    first = django_planton.register(Task(name="dup", schedule=nothing))
    with pytest.raises(DuplicateTaskNameError) as raised:
        django_planton.register(Task(name="dup", schedule=nothing))
    assert raised.value.duplicate_task_name == "dup"
    assert planton_registry.get("dup") is first

    with pytest.raises(DuplicateTaskNameError):

        @django_planton.task(name="dup")
        def other(context):
            return []


def test_registering_the_same_object_twice_is_fine(planton_registry):
    task = Task(name="again", schedule=nothing)
    assert planton_registry.register(task) is task
    assert planton_registry.register(task) is task
    assert len(planton_registry) == 1


def test_register_refuses_what_is_not_a_task(planton_registry):
    with pytest.raises(PlantonError):
        planton_registry.register(nothing)
    assert len(planton_registry) == 0


def test_select_returns_all_sorted_or_the_named_ones(planton_registry):
    b = planton_registry.register(Task(name="b", schedule=nothing))
    a = planton_registry.register(Task(name="a", schedule=nothing))
    c = planton_registry.register(Task(name="c", schedule=nothing))
    assert planton_registry.select() == [a, b, c]
    assert planton_registry.select([]) == [a, b, c]
    assert planton_registry.select(["c", "a", "c"]) == [c, a]


def test_select_of_an_unknown_name_lists_the_registered_ones(planton_registry):
    planton_registry.register(Task(name="alpha", schedule=nothing))
    planton_registry.register(Task(name="beta", schedule=nothing))
    with pytest.raises(KeyError) as raised:
        planton_registry.select(["alpha", "gamma"])
    message = str(raised.value)
    assert "gamma" in message
    assert "alpha, beta" in message


def test_get_on_an_empty_registry_says_none_are_registered(planton_registry):
    with pytest.raises(KeyError, match="none"):
        planton_registry.get("anything")


def test_unregister(planton_registry):
    planton_registry.register(Task(name="gone", schedule=nothing))
    planton_registry.unregister("gone")
    planton_registry.unregister("never-there")
    assert "gone" not in planton_registry


def test_registries_are_independent():
    mine = TaskRegistry()
    mine.register(Task(name="only-here", schedule=nothing))
    assert "only-here" in mine
    assert "only-here" not in registry


def test_the_fixture_leaves_the_global_registry_as_it_was(planton_registry):
    # planton_registry hands out the global registry, emptied; whatever a
    # test registers there is gone afterwards (see the next test).
    assert planton_registry is registry
    assert len(registry) == 0
    django_planton.register(Task(name="leak-check", schedule=nothing))


def test_no_task_leaked_from_the_previous_test():
    assert "leak-check" not in registry
