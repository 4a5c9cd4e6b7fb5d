"""The loop's queue of due times: one entry in force per task; a batch takes the due ones."""

from __future__ import annotations

from django_planton.core.due import DueQueue


def test_take_due_takes_the_tasks_due_that_may_share_a_batch_earliest_first():
    queue = DueQueue()
    queue.push("late", at=9.0, due_at=9.0)
    queue.push("second", at=2.5, due_at=2.0)
    queue.push("first", at=1.5, due_at=1.0)
    queue.push("busy", at=1.2, due_at=1.2)

    assert queue.take_due(5.0, lambda name: name != "busy") == ["first", "second"]
    assert set(queue.pending) == {"late", "busy"}
    # Passed over, not lost: taken once it may be.
    assert queue.take_due(5.0, lambda name: True) == ["busy"]
    assert queue.take_due(5.0, lambda name: True) == []
    assert queue.take_due(9.0, lambda name: True) == ["late"]


def test_a_superseded_or_popped_entry_is_not_taken_again():
    queue = DueQueue()
    queue.push("woken", at=10.0, due_at=10.0)
    assert queue.push("woken", at=1.0, due_at=1.0)  # a wake-up: earlier, in force
    assert not queue.push("woken", at=5.0, due_at=5.0)  # later: ignored
    assert queue.next_at() == 1.0
    assert queue.pop().task_name == "woken"

    assert queue.take_due(20.0, lambda name: True) == []
    assert queue.next_at() is None
