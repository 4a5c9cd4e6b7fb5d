"""Executors: where the receivers run, how many at once, and what a shutdown does to them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.test import override_settings

from django_planton import Task, signals
from django_planton.errors import PlantonError
from django_planton.executors import (
    QUICK_THREADS,
    STOPPED_REASON,
    Inline,
    Threads,
    default_executor,
)
from django_planton.executors import threads as threads_module
from django_planton.models import ExecutionState, MaintenanceTaskExecution
from django_planton.registry import TaskRegistry
from django_planton.runner import DatabaseCycleRunner, sync_tasks

from ..factories import MaintenanceTaskExecutionFactory
from ..support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


class AtOnce:
    """Counts the receivers working at the same moment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.now -= 1


@contextmanager
def receiving(receiver: Any, task: Task) -> Iterator[None]:
    """``receiver`` connected to ``task``'s ``task_dispatched`` inside the block."""
    signals.task_dispatched.connect(receiver, sender=task, weak=False)
    try:
        yield
    finally:
        signals.task_dispatched.disconnect(receiver, sender=task)


def gated_receiver(started: threading.Event, gate: threading.Event):
    """A receiver that says it started, waits for ``gate``, then completes its execution."""

    def receiver(sender: Any, execution: MaintenanceTaskExecution, **kwargs: Any) -> None:
        started.set()
        gate.wait(10)
        execution.complete()

    return receiver


def working_receiver(at_once: AtOnce, seconds: float):
    def receiver(sender: Any, execution: MaintenanceTaskExecution, **kwargs: Any) -> None:
        with at_once:
            time.sleep(seconds)
        execution.complete()

    return receiver


def numbers(count: int):
    remaining = [str(n) for n in range(count)]
    lock = threading.Lock()

    def schedule(context):
        with lock:
            taken, remaining[:] = remaining[: context.limit], remaining[context.limit :]
        return taken

    return schedule


@pytest.mark.parametrize(("executor", "expected"), [(Threads(), 4), (Inline(), 1)])
def test_receivers_overlap_under_threads_up_to_the_concurrency(
    make_task, make_runner, executor, expected
):
    at_once = AtOnce()
    task = make_task("work", numbers(12), concurrency=4, delay=0.01, executor=executor)
    receiver = working_receiver(at_once, 0.2)
    with receiving(receiver, task):
        make_runner([task], start=True)
        done = MaintenanceTaskExecution.objects.for_task("work").finished()
        assert wait_until(lambda: done.count() == 12, timeout=30)
    assert at_once.most == expected


def drain(make_task, make_runner, name: str, count: int, receiver) -> None:
    """Run a task of concurrency ``count`` over ``count`` items under Threads, to the end."""
    task = make_task(name, numbers(count), concurrency=count, delay=0.01, executor=Threads())
    with receiving(receiver, task):
        make_runner([task], start=True)
        done = MaintenanceTaskExecution.objects.for_task(name).finished()
        assert wait_until(lambda: done.count() == count, timeout=30)


def test_quick_receivers_share_a_few_threads(make_task, make_runner, monkeypatch):
    # On a loaded machine SQLite's write lock may keep them past QUICK_RECEIVER,
    # or one past STUCK_RECEIVER, and rightly bring in more threads: not what
    # this test is about.
    monkeypatch.setattr(threads_module, "QUICK_RECEIVER", 10.0)
    monkeypatch.setattr(threads_module, "STUCK_RECEIVER", 30.0)
    at_once = AtOnce()
    threads: set[int] = set()

    def receiver(sender: Any, execution: MaintenanceTaskExecution, **kwargs: Any) -> None:
        threads.add(threading.get_ident())
        with at_once:
            execution.complete()

    drain(make_task, make_runner, "quick", 3 * QUICK_THREADS, receiver)
    assert at_once.most <= QUICK_THREADS
    # A thread on its way back to the pool may be passed over for a new one;
    # a thread per execution would be 12.
    assert len(threads) <= QUICK_THREADS + 2


def test_slow_receivers_get_a_thread_each_up_to_the_concurrency(make_task, make_runner):
    # Twice as many as a quick task runs at once: the first four run past
    # STUCK_RECEIVER, and the others get threads of their own meanwhile.
    at_once = AtOnce()
    drain(make_task, make_runner, "slow", 2 * QUICK_THREADS, working_receiver(at_once, 0.5))
    assert at_once.most == 2 * QUICK_THREADS


def test_the_cycle_returns_once_the_batch_is_handed_over(make_task):
    gate = threading.Event()
    started = threading.Event()
    executor = Threads()
    task = make_task("handover", numbers(2), concurrency=2, executor=executor)

    receiver = gated_receiver(started, gate)
    signals.task_dispatched.connect(receiver, sender=task, weak=False)
    try:
        sync_tasks([task])
        report = DatabaseCycleRunner(hostname="test-host").run(task)
        assert report.instructions == ("0", "1")
        assert started.wait(5)
        running = MaintenanceTaskExecution.objects.for_task("handover").running()
        assert running.count() == 2
        gate.set()
        # Still connected: the second receiver may not have been sent yet.
        assert wait_until(lambda: not running.exists(), timeout=10)
    finally:
        gate.set()
        assert executor.stop(timeout=10)
        signals.task_dispatched.disconnect(receiver, sender=task)


def test_a_raising_receiver_fails_its_execution_in_a_pool_thread(make_task, make_runner):
    task = make_task("breaks", numbers(1), executor=Threads())

    def receiver(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("SMTP refused")

    with receiving(receiver, task):
        make_runner([task]).run_once()
    [execution] = MaintenanceTaskExecution.objects.for_task("breaks")
    assert execution.state == ExecutionState.COMPLETED
    assert execution.error["message"] == "SMTP refused"


def test_once_returns_after_its_receivers_have_run(make_task, make_runner):
    task = make_task("once", numbers(3), concurrency=3, executor=Threads())
    receiver = working_receiver(AtOnce(), 0.3)
    with receiving(receiver, task):
        make_runner([task]).run_once()
        finished = MaintenanceTaskExecution.objects.for_task("once").finished().count()
    assert finished == 3


def test_a_shutdown_lets_running_receivers_finish_and_ends_those_not_started(
    make_task, make_runner, record_signal
):
    gate = threading.Event()
    working = threading.Event()
    task = make_task("stopping", numbers(3), concurrency=3, executor=Threads(max_workers=1))

    receiver = gated_receiver(working, gate)

    terminated = record_signal(signals.execution_terminated)
    signals.task_dispatched.connect(receiver, sender=task, weak=False)
    try:
        runner = make_runner([task], start=True)
        assert working.wait(10)
        threading.Timer(0.5, gate.set).start()
        assert runner.stop(timeout=10)
    finally:
        gate.set()
        signals.task_dispatched.disconnect(receiver, sender=task)

    executions = list(MaintenanceTaskExecution.objects.for_task("stopping").order_by("pk"))
    assert len(executions) == 3
    completed = [e for e in executions if e.terminated_at is None]
    stopped = [e for e in executions if e.terminated_at is not None]
    assert len(completed) == 1  # the one that was running finished
    assert completed[0].ended_at is not None
    assert len(stopped) == 2
    assert {e.terminated_reason for e in stopped} == {STOPPED_REASON}
    assert sorted(call["execution"].pk for call in terminated) == [e.pk for e in stopped]


def test_register_refuses_what_is_not_an_executor():
    with pytest.raises(PlantonError, match="executor must be"):
        TaskRegistry().register(Task("x", lambda context: []), executor=object())


def test_threads_needs_at_least_one_worker():
    with pytest.raises(ValueError, match="at least 1"):
        Threads(max_workers=0)


@override_settings(PLANTON_EXECUTOR="django_planton.executors.Inline")
def test_the_default_executor_comes_from_the_setting():
    executor = default_executor()
    assert isinstance(executor, Inline)
    assert default_executor() is executor  # one instance, so tasks share it


def test_the_default_executor_is_threads():
    assert isinstance(default_executor(), Threads)


@override_settings(PLANTON_EXECUTOR="django.utils.timezone.now")
def test_a_setting_that_names_no_executor_is_an_error():
    with pytest.raises(PlantonError, match="not an Executor class"):
        default_executor()


def test_a_receiver_that_starts_late_skips_an_execution_ended_meanwhile(
    make_task, make_runner, in_other_thread, caplog
):
    """Inline: the second receiver waits behind the first; its execution is terminated meanwhile."""
    ran: list[str] = []
    task = make_task("late", numbers(2), concurrency=2, executor=Inline())

    def receiver(sender: Any, execution: MaintenanceTaskExecution, **kwargs: Any) -> None:
        ran.append(execution.instruction)
        if execution.instruction == "0":
            # Meanwhile an operator (another connection) ends the other one.
            in_other_thread(
                lambda: MaintenanceTaskExecution.objects.filter(instruction="1").terminate(
                    "operator"
                )
            )
            time.sleep(1.2)  # past LATE_START: the next one is looked up first
        execution.complete()

    with receiving(receiver, task):
        make_runner([task]).run_once()

    assert ran == ["0"]
    assert any(
        "ended before its receivers started (operator)" in r.getMessage() for r in caplog.records
    )


def test_a_stopped_pool_runs_what_it_is_handed_after(record_signal):
    # One thread for two tasks: the second task's taker waits in the pool's
    # backlog, and the stop drops it. The next batch must not count it.
    executor = Threads(max_workers=1)
    gate = threading.Event()
    blocking, waiting = Task("blocking", lambda context: []), Task("waiting", lambda context: [])
    ran = record_signal(signals.task_dispatched, sender=waiting)

    working = threading.Event()

    block = gated_receiver(working, gate)

    signals.task_dispatched.connect(block, sender=blocking, weak=False)
    try:
        executor.submit(blocking, [MaintenanceTaskExecutionFactory()])
        assert working.wait(10)  # the pool's one thread is taken
        executor.submit(waiting, [MaintenanceTaskExecutionFactory()])
        assert not executor.stop(timeout=0.2)  # the blocking receiver still runs
        gate.set()
        assert wait_until(lambda: executor.receivers_running() == 0)
        assert len(ran) == 0  # terminated, not run

        executor.submit(waiting, [MaintenanceTaskExecutionFactory(instruction="after")])
        assert executor.wait(timeout=10)
        assert [call["instruction"] for call in ran.items] == ["after"]
    finally:
        gate.set()
        executor.stop(timeout=10)
        signals.task_dispatched.disconnect(block, sender=blocking)


def test_a_connection_opened_again_after_close_connections_is_closed_at_stop():
    # run_planton --once closes the receivers' connections and keeps the
    # threads: a thread's next receiver opens its connection again, and the
    # stop must close that one too.
    from django.db import connections

    executor = Threads()
    task = Task("reopened", lambda context: [])
    wrappers: list[Any] = []

    def receiver(sender: Any, execution: MaintenanceTaskExecution, **kwargs: Any) -> None:
        execution.complete()
        wrappers.append(connections["default"])

    signals.task_dispatched.connect(receiver, sender=task, weak=False)
    try:
        executor.submit(task, [MaintenanceTaskExecutionFactory()])
        assert executor.wait(timeout=10)
        executor.close_connections()
        assert wrappers[0].connection is None
        # Back among the pool's idle threads, it takes the next receiver.
        assert wait_until(lambda: executor._pool is not None and len(executor._pool._idle) == 1)
        executor.submit(task, [MaintenanceTaskExecutionFactory()])
        assert executor.wait(timeout=10)
        assert wrappers[1] is wrappers[0]  # the same thread, its connection open again
        assert wrappers[1].connection is not None
        assert executor.stop(timeout=10)
        assert wrappers[1].connection is None
    finally:
        executor.stop(timeout=10)
        signals.task_dispatched.disconnect(receiver, sender=task)
