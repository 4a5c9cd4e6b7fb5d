"""DjangoTasks: receivers run in a real ``db_worker`` process of django-tasks-db.

``run_planton --once`` enqueues one Django task per execution; ``db_worker
--batch`` then runs them to the end and exits. Checked from the database: the
receivers ran in the worker's process, an execution terminated before a
worker took it is left alone, a receiver that raises fails its execution.
On every database; on SQLite the processes share a file that the test reads
with the standard library.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from typing import Any

import pytest
from django.db import connection

from .conftest import ROOT, subprocess_env
from .testapp.tasks import RAN_BY_PREFIX

pytestmark = pytest.mark.django_db(transaction=True)

TASK = "testapp_bridged"
JOBS = ("bridge-1", "bridge-2", "bridge-gone", "bridge-raise")


def manage(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=subprocess_env(url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of the subprocesses' database (``%s`` placeholders)."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return db.execute(sql.replace("%s", "?"), params).fetchall()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


def executions(url: str, task: str = TASK) -> dict[str, tuple[Any, ...]]:
    """instruction -> (ended_at, terminated_reason, error), for a bridged task."""
    rows = query(
        url,
        "SELECT e.instruction, e.ended_at, e.terminated_reason, e.error "
        "FROM maintenance_task_execution e JOIN maintenance_task t "
        "ON t.id = e.maintenance_task_id WHERE t.nid = %s",
        (task,),
    )
    return {row[0]: row[1:] for row in rows}


def error_message(value: Any) -> str | None:
    if value is None:
        return None
    return (json.loads(value) if isinstance(value, str) else value)["message"]


def test_receivers_run_in_the_worker_and_skip_what_ended_meanwhile(subprocess_database_url):
    url = subprocess_database_url
    for name in JOBS:
        query(url, "INSERT INTO auth_group (name) VALUES (%s)", (name,))

    planton = manage(url, "run_planton", "--once", "--task", TASK)
    assert planton.returncode == 0, planton.stderr
    assert ": 4 dispatched, 0 succeeded, 0 failed, 0 terminated, 4 still running;" in planton.stdout
    queued = executions(url)
    assert set(queued) == set(JOBS)
    assert all(ended_at is None for ended_at, _, _ in queued.values())  # none ran yet
    terminate = (
        "from django_planton.models import MaintenanceTaskExecution as E; "
        "E.objects.filter(instruction='bridge-gone').terminate('operator')"
    )
    assert manage(url, "shell", "-c", terminate).returncode == 0

    worker = manage(url, "db_worker", "--batch", "--no-startup-delay")
    assert worker.returncode == 0, worker.stderr

    ended = executions(url)
    ran_by = [
        name
        for (name,) in query(url, "SELECT name FROM auth_group WHERE name LIKE %s", ("ranby-%",))
    ]
    pids = {name.removeprefix(RAN_BY_PREFIX).split("-")[0] for name in ran_by}
    left = {
        name for (name,) in query(url, "SELECT name FROM auth_group WHERE name LIKE 'bridge-%%'")
    }
    assert len(ran_by) == 2, ran_by
    assert len(pids) == 1
    assert pids != {str(os.getpid())}  # the worker's process
    for name in ("bridge-1", "bridge-2"):
        ended_at, reason, error = ended[name]
        assert ended_at is not None
        assert reason is None
        assert error is None
    assert ended["bridge-gone"][1] == "operator"
    assert "no longer running" in worker.stderr + worker.stdout
    assert error_message(ended["bridge-raise"][2]) == "the receiver of bridge-raise raised"
    assert left == {"bridge-gone", "bridge-raise"}  # the two that ran deleted their job
