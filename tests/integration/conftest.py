"""Fixtures of the integration tests: ``manage.py`` subprocesses on the database under test.

* ``manage`` / ``planton_process`` run ``manage.py`` in a subprocess, with the
  settings of ``tests/integration/settings_subprocess.py`` (the example site
  plus a test app that registers tasks) and a database of the vendor under test.
* The runner's fixtures (``make_task``, ``make_runner``, ``record_signal``, ...)
  come from ``runner/conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection

from ..runner.conftest import (  # noqa: F401 - fixtures shared with the runner's tests
    in_other_thread,
    make_runner,
    make_task,
    make_workers,
    most_at_once,
    record_signal,
    running_sampler,
    scripted_schedule,
)

ROOT = Path(__file__).resolve().parents[2]
SUBPROCESS_SETTINGS = "tests.integration.settings_subprocess"


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
