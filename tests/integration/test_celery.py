"""Celery: receivers run in a real ``celery worker`` process, through a real Redis broker.

``run_planton --once`` sends one message per execution; a worker (solo pool,
queue ``planton_test``) runs them. Checked from the database: the receivers
ran in the worker's process, an execution terminated before the worker took
it is left alone, a receiver that raises fails its execution; a broker that
is down fails the executions it could not take.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from scripts import redis

from .conftest import ROOT, subprocess_env
from .test_django_tasks import error_message, executions, query
from .testapp.tasks import CELERY_QUEUE, RAN_BY_PREFIX

pytestmark = [
    pytest.mark.skipif(redis.binary() is None, reason="redis-server is not installed"),
    pytest.mark.django_db(transaction=True),
]

TASK = "testapp_celery"
JOBS = ("celery-1", "celery-2", "celery-gone", "celery-raise")


@pytest.fixture
def broker() -> Iterator[str]:
    with redis.RedisServer() as server:
        yield server.url


def manage(url: str, broker_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=subprocess_env(url, PLANTON_TEST_BROKER_URL=broker_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_receivers_run_in_the_celery_worker_and_skip_what_ended_meanwhile(
    subprocess_database_url, broker, tmp_path
):
    url = subprocess_database_url
    for name in JOBS:
        query(url, "INSERT INTO auth_group (name) VALUES (%s)", (name,))

    planton = manage(url, broker, "run_planton", "--once", "--task", TASK)
    assert planton.returncode == 0, planton.stderr
    assert ": 4 dispatched, 0 succeeded, 0 failed, 0 terminated, 4 still running;" in planton.stdout
    terminate = (
        "from django_planton.models import MaintenanceTaskExecution as E; "
        "E.objects.filter(instruction='celery-gone').terminate('operator')"
    )
    assert manage(url, broker, "shell", "-c", terminate).returncode == 0

    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "tests.integration.celery_app", "worker",
                "--pool=solo", "-Q", CELERY_QUEUE, "--without-gossip", "--without-mingle",
                "--without-heartbeat", "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=subprocess_env(url, PLANTON_TEST_BROKER_URL=broker),
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ended = executions(url, TASK)
            if all(values[0] is not None for values in ended.values()):
                break
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    output = log.read_text()

    ended = executions(url, TASK)
    assert all(values[0] is not None for values in ended.values()), (ended, output[-3000:])
    ran_by = [
        name
        for (name,) in query(url, "SELECT name FROM auth_group WHERE name LIKE %s", ("ranby-%",))
    ]
    pids = {name.removeprefix(RAN_BY_PREFIX).split("-")[0] for name in ran_by}
    assert len(ran_by) == 2, (ran_by, output[-3000:])
    assert pids == {str(worker.pid)}  # the worker's own process
    assert pids != {str(os.getpid())}
    for name in ("celery-1", "celery-2"):
        assert ended[name][1] is None
        assert ended[name][2] is None
    assert ended["celery-gone"][1] == "operator"
    assert "no longer running" in output
    assert error_message(ended["celery-raise"][2]) == "the receiver of celery-raise raised"


def test_a_broker_that_is_down_fails_the_executions_it_could_not_take(subprocess_database_url):
    url = subprocess_database_url
    query(url, "INSERT INTO auth_group (name) VALUES (%s)", ("celery-lost",))

    began = time.monotonic()
    planton = manage(url, "redis://127.0.0.1:1/0", "run_planton", "--once", "--task", TASK)
    took = time.monotonic() - began

    assert planton.returncode == 1, planton.stderr  # an execution failed
    assert "CommandError: 1 of 1 execution(s) failed" in planton.stderr
    assert took < 60
    [(ended_at, reason, error)] = executions(url, TASK).values()
    assert ended_at is not None
    assert reason is None
    assert "refused" in error_message(error).lower()  # the broker's error, recorded
    assert "handing execution" in planton.stderr
