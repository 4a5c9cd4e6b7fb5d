"""Fixtures of the database runner's tests, shared with the app and integration layers.

``app/conftest.py`` and ``integration/conftest.py`` import the ones they use.

* ``make_task`` builds (and registers, in the registry ``planton_registry``
  emptied for the test) a task with a given schedule and delay;
  ``scripted_schedule`` hands out :func:`~tests.support.scripted`.
* ``make_runner`` builds :class:`~django_planton.runner.Runner` objects and
  stops every started one at teardown.
* ``record_signal`` connects a recording receiver for one test.
* ``in_other_thread``, ``make_workers`` and ``running_sampler`` run work on
  connections of their own; ``most_at_once`` measures overlapping executions.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pytest
from django.db import connection, connections

from django_planton.core import ScheduleContext, Task
from django_planton.registry import TaskRegistry
from django_planton.runner import Runner
from scripts import measure
from scripts.relay import Relay

from ..support import Log, scripted

# -- threads with connections of their own -------------------------------------------


def _in_other_thread(function: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Run ``function`` in a new thread, so on its own connection, and return its result."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed back to the caller
            outcome["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, name="test-other-thread")
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the other thread did not finish in time"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.fixture
def in_other_thread() -> Callable[..., Any]:
    return _in_other_thread


# -- tasks -----------------------------------------------------------------------


@pytest.fixture
def make_task(planton_registry: TaskRegistry) -> Callable[..., Task]:
    """Build a task (registered in the emptied registry unless ``register=False``).

    ``schedule`` defaults to one that finds nothing; ``delay`` is either a number
    of seconds for every attempt or a ``calculate_delay`` function. The default
    is tiny but not 0, so that a background runner does not spin on an idle task.
    """

    def make(
        name: str = "task",
        schedule: Callable[[ScheduleContext], Any] | None = None,
        *,
        concurrency: int = 1,
        delay: float | Callable[[int], float] = 0.01,
        calculate_limit: Callable[[int, Sequence[str]], int] | None = None,
        register: bool = True,
        executor: Any = None,
    ) -> Task:
        calculate_delay = delay if callable(delay) else (lambda attempt_number: delay)
        task = Task(
            name=name,
            schedule=schedule if schedule is not None else scripted(),
            concurrency=concurrency,
            calculate_delay=calculate_delay,
            calculate_limit=calculate_limit,
        )
        if register:
            planton_registry.register(task, executor=executor)
        return task

    return make


@pytest.fixture
def scripted_schedule() -> Callable[..., Callable[[ScheduleContext], Any]]:
    return scripted


# -- runners and signals --------------------------------------------------------


@pytest.fixture
def make_runner() -> Iterator[Callable[..., Runner]]:
    """Build runners; every runner that is still running at teardown is stopped.

    Runners started here run their cycles in worker threads with their own
    connections, so tests that start one need ``django_db(transaction=True)``.
    """
    runners: list[Runner] = []

    def make(tasks: Sequence[Task] | None = None, *, start: bool = False, **kwargs: Any) -> Runner:
        kwargs.setdefault("hostname", "test-host")
        runner = Runner(tasks, **kwargs)
        runners.append(runner)
        if start:
            runner.start()
        return runner

    yield make
    for runner in runners:
        if runner.planton.is_running:
            assert runner.stop(timeout=10), "a runner did not stop within 10 s"
        else:  # run_once() leaves its executors' threads for the next call
            for executor in runner.executors():
                assert executor.stop(timeout=10), "an executor did not stop within 10 s"


class SignalLog(Log):
    """A receiver that records the ``sender`` and keyword arguments of every signal."""

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        self.append({"sender": sender, **kwargs})


@pytest.fixture
def record_signal() -> Iterator[Callable[..., SignalLog]]:
    """Connect a :class:`SignalLog` to a signal for this test."""
    connected: list[tuple[Any, SignalLog, Any]] = []

    def record(signal: Any, sender: Any = None) -> SignalLog:
        log = SignalLog()
        signal.connect(log, sender=sender, weak=False)
        connected.append((signal, log, sender))
        return log

    yield record
    for signal, log, sender in connected:
        signal.disconnect(log, sender=sender)


# -- concurrent work ------------------------------------------------------------------


class Workers:
    """Worker threads that keep their connection for the whole test, then close it.

    ``submit(*args)`` queues a call of ``work(*args)``; errors are collected in
    ``errors`` rather than lost in a thread.
    """

    def __init__(self, count: int, work: Callable[..., None]) -> None:
        self.queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self.work = work
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._loop, name=f"test-worker-{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, *args: Any) -> None:
        self.queue.put(args)

    def _loop(self) -> None:
        try:
            while (args := self.queue.get()) is not None:
                try:
                    self.work(*args)
                except Exception as error:
                    self.errors.append(error)
        finally:
            connection.close()

    def stop(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join(10)


@pytest.fixture
def make_workers() -> Iterator[Callable[[int, Callable[..., None]], Workers]]:
    """Start :class:`Workers`; every pool is stopped at teardown."""
    pools: list[Workers] = []

    def make(count: int, work: Callable[..., None]) -> Workers:
        pools.append(Workers(count, work))
        return pools[-1]

    yield make
    for pool in pools:
        pool.stop()


class RunningSampler(threading.Thread):
    """Counts a task's running executions over and over, on a connection of its own."""

    def __init__(self, task_name: str) -> None:
        super().__init__(name="test-sampler", daemon=True)
        self.task_name = task_name
        self.samples: list[int] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        from django_planton.models import MaintenanceTaskExecution

        try:
            running = MaintenanceTaskExecution.objects.for_task(self.task_name).running()
            while not self.stopping.is_set():
                self.samples.append(running.count())
                time.sleep(0.002)
        finally:
            connection.close()

    def stop(self) -> list[int]:
        self.stopping.set()
        self.join(10)
        return self.samples


@pytest.fixture
def running_sampler() -> Iterator[Callable[[str], RunningSampler]]:
    """Start a :class:`RunningSampler` for a task; ``stop()`` returns its samples."""
    samplers: list[RunningSampler] = []

    def start(task_name: str) -> RunningSampler:
        samplers.append(RunningSampler(task_name))
        samplers[-1].start()
        return samplers[-1]

    yield start
    for sampler in samplers:
        sampler.stop()


@pytest.fixture
def most_at_once() -> Callable[[Iterable[Any]], int]:
    """The most executions whose [started_at, ended_at) intervals overlap."""
    return lambda executions: measure.most_at_once(
        (execution.started_at, execution.ended_at) for execution in executions
    )


# -- a database behind a relay that can refuse or black-hole connections ----------------


@pytest.fixture
def relayed_database() -> Iterator[Relay]:
    """This thread's default connection, and any opened later, go through a :class:`Relay`.

    PostgreSQL and MariaDB only (SQLite has no server). The relay forwards
    until the test switches it; the connection settings are restored after.
    """
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server to be cut off from")
    settings_dict = connection.settings_dict
    saved = {key: settings_dict.get(key) for key in ("HOST", "PORT")}
    relay = Relay((settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"]))).start()
    connection.close()
    settings_dict.update(HOST="127.0.0.1", PORT=str(relay.port))
    try:
        yield relay
    finally:
        relay.stop()
        connection.close()
        settings_dict.update(saved)
