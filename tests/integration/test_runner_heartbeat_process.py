"""A ``run_planton`` process killed with ``kill -9``: its row turns dead, another ends its work.

Runner A works on slow jobs in its own threads (``testapp_slow_jobs``, whose
receivers take ten minutes) and hands a bridged job to Django's tasks
framework (``testapp_bridged``, no worker running). After ``kill -9`` its row
in ``planton_runner`` stops beating and turns dead three intervals after the
last beat; runner B's housekeeping then ends A's slow jobs as terminated,
naming A, and leaves the bridged one to its worker. Read through SQL, so
that the same test reads the subprocesses' SQLite file or the server.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from typing import Any

import pytest
from django.db import connection

from django_planton.sql import now_sql

from ..support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

INTERVAL = 0.5  # seconds between two heartbeats of the runners here


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of the subprocesses' database (``%s`` placeholders, ``{now}`` its clock)."""
    if url.startswith("sqlite:///"):
        sql = sql.format(now="STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')").replace("%s", "?")
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            rows = db.execute(sql, params).fetchall()
        db.close()
        return rows
    with connection.cursor() as cursor:
        cursor.execute(sql.format(now=now_sql(connection)), params)
        return list(cursor.fetchall()) if cursor.description else []


def runners(url: str, *, dead: bool = False) -> dict[str, tuple[Any, ...]]:
    """hostname -> (pid, tasks), of every runner row or of the dead ones."""
    where = " WHERE dead_after < {now}" if dead else ""
    rows = query(url, "SELECT hostname, pid, tasks FROM planton_runner" + where)
    return {
        host: (pid, json.loads(tasks) if isinstance(tasks, str) else tasks)
        for host, pid, tasks in rows
    }


def executions(url: str, task: str) -> list[tuple[Any, ...]]:
    """(hostname, ended_at, terminated_reason) of each execution of ``task``."""
    return query(
        url,
        "SELECT e.hostname, e.ended_at, e.terminated_reason FROM maintenance_task_execution e "
        "JOIN maintenance_task t ON t.id = e.maintenance_task_id WHERE t.nid = %s ORDER BY e.id",
        (task,),
    )


def test_a_killed_runner_turns_dead_and_another_ends_its_in_process_work(
    planton_process, subprocess_database_url
):
    url = subprocess_database_url
    for name in ("slowjob-1", "slowjob-2", "bridge-1"):
        query(url, "INSERT INTO auth_group (name) VALUES (%s)", (name,))
    beat = {"PLANTON_TEST_SET_HEARTBEAT_INTERVAL": repr(INTERVAL)}
    a = planton_process(
        ["run_planton", "--task", "testapp_slow_jobs", "--task", "testapp_bridged"],
        url,
        PLANTON_TEST_HOSTNAME="runner-a",
        PLANTON_TEST_WORK_SECONDS="600",
        **beat,
    )
    working = "SELECT count(*) FROM auth_group WHERE name LIKE 'working-%%'"
    assert wait_until(lambda: query(url, working)[0][0] == 2, timeout=30), a.stderr
    assert wait_until(lambda: executions(url, "testapp_bridged"), timeout=30), a.stderr
    pid, tasks = runners(url)["runner-a"]
    assert pid == a.popen.pid
    assert {task["name"]: task["in_process"] for task in tasks} == {
        "testapp_slow_jobs": True,
        "testapp_bridged": False,
    }

    os.kill(a.popen.pid, signal.SIGKILL)
    killed = time.monotonic()
    assert a.wait(timeout=10) == -signal.SIGKILL
    assert wait_until(lambda: "runner-a" in runners(url, dead=True), timeout=10)
    assert time.monotonic() - killed < 3 * INTERVAL + 3
    # Dead, but nobody has judged it yet: its work still holds its slots.
    assert all(ended is None for _, ended, _ in executions(url, "testapp_slow_jobs"))

    b = planton_process(
        ["run_planton", "--task", "testapp_idle"],
        url,
        PLANTON_TEST_HOSTNAME="runner-b",
        PLANTON_TEST_HOUSEKEEPING_INTERVAL="0.2",
        **beat,
    )

    def slow_jobs_ended() -> bool:
        return all(ended is not None for _, ended, _ in executions(url, "testapp_slow_jobs"))

    assert wait_until(slow_jobs_ended, timeout=20), b.stderr
    slow = executions(url, "testapp_slow_jobs")
    assert len(slow) == 2
    for hostname, _, reason in slow:
        assert hostname == f"runner-a:{pid}"
        assert reason.startswith(f"runner runner-a:{pid} stopped heartbeating (last seen "), reason
    [(_, bridged_ended, _)] = executions(url, "testapp_bridged")
    assert bridged_ended is None  # handed to Django's tasks framework: its worker's to end

    b.send_signal(signal.SIGTERM)
    assert b.wait(timeout=20) == 0, b.stderr
    assert "Traceback" not in b.stderr, b.stderr
    left = runners(url)
    assert "runner-b" not in left  # a clean stop deletes the row
    assert "runner-a" in left  # a dead row stays, shown as dead, for an hour
