"""Fixtures shared by the tests of the core and of the Django layer.

Nothing here needs the database by itself, so the database-free tests of the
core run next to these without paying for it. Timing is never asserted
exactly: background work is polled with ``wait_until`` and delays are tiny.

* ``make_planton`` builds core loops (events to ``recorder``) and stops them
  at teardown; ``gate`` is opened first, so user code blocked on it ends.
* ``planton_registry`` empties the global task registry for one test and
  restores it afterwards, so that no test leaks tasks into another;
  ``make_task`` builds (and registers) a task with a given schedule and delay.
* ``make_runner`` builds :class:`~django_planton.runner.Runner` objects and
  stops every started one at teardown.
* ``record_signal`` connects a recording receiver for one test.
* ``manage`` / ``planton_process`` run ``manage.py`` in a subprocess, with the
  settings of ``tests/settings_subprocess.py`` (the example site plus a test
  app that registers tasks) and a database of the vendor under test.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection, connections

from django_planton.core import Planton, ScheduleContext, Task
from django_planton.registry import TaskRegistry, registry
from django_planton.runner import Runner
from scripts import measure

from . import support
from .support import Log, Recorder, no_active

ROOT = Path(__file__).resolve().parent.parent
SUBPROCESS_SETTINGS = "tests.settings_subprocess"


# -- test databases of this run's own ------------------------------------------------


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Give this pytest run test databases nobody else uses.

    The example site names one SQLite test file, and a PostgreSQL server is
    often shared: two runs at once (a developer's and CI's, or two
    developers' in one tree) would otherwise drop each other's database
    mid-test. SQLite test files go to this run's temporary directory, other
    databases get the process id as a suffix.
    """
    from django.conf import settings

    for db_settings in settings.DATABASES.values():
        test = db_settings.setdefault("TEST", {})
        name = test.get("NAME")
        if db_settings["ENGINE"] == "django.db.backends.sqlite3":
            if name and name != ":memory:" and "mode=memory" not in name:
                test["NAME"] = str(tmp_path_factory.mktemp("test-db") / Path(name).name)
        else:
            test["NAME"] = f"{name or 'test_' + db_settings['NAME']}_{os.getpid()}"


# -- polling and threads ---------------------------------------------------------


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    return support.wait_until


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


# -- the core loop -----------------------------------------------------------------

_RECORDER = object()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def gate() -> threading.Event:
    """An event that blocking user code waits on; opened before any Planton stops."""
    return threading.Event()


@pytest.fixture
def make_planton(recorder: Recorder, gate: threading.Event) -> Iterator[Callable[..., Planton]]:
    """Build (and by default start) Plantons; every one is stopped at teardown.

    Events go to ``recorder`` unless ``on_task``/``on_error`` say otherwise;
    other keywords (``cycle_runner``, ``max_workers``, ``batch_size``) go to
    :class:`Planton`.
    """
    created: list[Planton] = []

    def make(
        tasks: Sequence[Task],
        get_active: Callable[[str], Sequence[str]] = no_active,
        *,
        on_task: Any = _RECORDER,
        on_error: Any = _RECORDER,
        start: bool = True,
        **kwargs: Any,
    ) -> Planton:
        planton = Planton(
            tasks=tasks,
            get_active_task_instructions=get_active,
            on_task=recorder.on_task if on_task is _RECORDER else on_task,
            on_error=recorder.on_error if on_error is _RECORDER else on_error,
            **kwargs,
        )
        created.append(planton)
        if start:
            planton.start()
        return planton

    yield make
    gate.set()
    for planton in created:
        planton.stop(timeout=5)


# -- the registry and tasks -----------------------------------------------------


@pytest.fixture
def planton_registry() -> Iterator[TaskRegistry]:
    """The global registry, emptied for this test; its own tasks come back afterwards."""
    saved = registry._tasks
    registry._tasks = {}
    try:
        yield registry
    finally:
        registry._tasks = saved


def scripted(*batches: Sequence[Any], then: Sequence[Any] = ()) -> Callable[[ScheduleContext], Any]:
    """A schedule that returns ``batches`` one per call, then ``then`` forever.

    Its ``contexts`` attribute logs the :class:`ScheduleContext` of every call.
    """
    contexts = Log()
    remaining = list(batches)
    lock = threading.Lock()

    def schedule(context: ScheduleContext) -> Any:
        contexts.append(context)
        with lock:
            if remaining:
                return remaining.pop(0)
        return list(then)

    schedule.contexts = contexts  # type: ignore[attr-defined]
    return schedule


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
            planton_registry.register(task)
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


# -- subprocesses -----------------------------------------------------------------


def subprocess_env(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=SUBPROCESS_SETTINGS,
        DATABASE_URL=database_url,
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def _manage(
    args: Sequence[str], database_url: str, *, timeout: float = 60.0, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=subprocess_env(database_url, **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def manage() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``manage.py`` with the subprocess settings and wait for it."""
    return _manage


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with every migration applied, made once and copied by tests."""
    path = tmp_path_factory.mktemp("planton-sqlite") / "template.sqlite3"
    result = _manage(["migrate", "--no-input", "-v", "0"], sqlite_url(path))
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture
def subprocess_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database that a ``manage.py`` subprocess can use.

    On SQLite: a copy of a migrated file in ``tmp_path``. On a database
    server: the test database itself (the test becomes transactional, so that
    both sides see each other's commits).
    """
    if connection.vendor == "sqlite":
        path = tmp_path / "db.sqlite3"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_file"), path)
        return sqlite_url(path)
    request.getfixturevalue("transactional_db")
    # A test in a transaction would leave the subprocess's commits behind.
    assert not connection.in_atomic_block, "mark the test django_db(transaction=True)"
    return server_url(connection.vendor, connection.settings_dict)


def server_url(vendor: str, settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for the database a connection's settings name."""
    scheme, default_port = {"postgresql": ("postgres", 5432), "mysql": ("mysql", 3306)}[vendor]
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "localhost"
    port = settings_dict.get("PORT") or default_port
    return f"{scheme}://{credentials}{host}:{port}/{quote(settings_dict['NAME'], safe='')}"


class PlantonProcess:
    """A ``manage.py`` subprocess whose output is collected by background readers."""

    def __init__(self, args: Sequence[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self._out), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._lock:
                lines.append(line)

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self._out)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._err)

    def wait_for_output(self, text: str, timeout: float = 30.0) -> bool:
        """Wait until ``text`` appears on stdout (False if the process ends or time runs out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stdout:
                return True
            if self.popen.poll() is not None:
                self._join_readers()
                return text in self.stdout
            time.sleep(0.02)
        return False

    def wait_for_stderr(self, text: str, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stderr:
                return True
            if self.popen.poll() is not None:
                self._join_readers()
                return text in self.stderr
            time.sleep(0.02)
        return False

    def send_signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the process still runs after ``timeout`` seconds."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._join_readers()
        return code

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(5)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        self._join_readers()
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def planton_process() -> Iterator[Callable[..., PlantonProcess]]:
    """Start ``manage.py`` subprocesses; any still running at teardown are killed."""
    started: list[PlantonProcess] = []

    def start(args: Sequence[str], database_url: str, **extra_env: str) -> PlantonProcess:
        process = PlantonProcess(args, subprocess_env(database_url, **extra_env))
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
