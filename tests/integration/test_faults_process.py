"""run_planton facing faults: a database that never answers, a cycle that runs too long."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from django.db import connection

from scripts.relay import Relay

from .conftest import ROOT, server_url, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has no server")
def test_run_planton_against_a_database_that_never_answers_fails_within_the_connect_timeout():
    settings_dict = connection.settings_dict
    with Relay((settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"]))) as relay:
        relay.set_mode("blackhole")
        url = server_url(
            connection.vendor, {**settings_dict, "HOST": "127.0.0.1", "PORT": relay.port}
        )
        began = time.monotonic()
        result = subprocess.run(
            [sys.executable, "manage.py", "run_planton"],
            cwd=ROOT,
            env=subprocess_env(url, PLANTON_TEST_SET_CONNECT_TIMEOUT="2"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        took = time.monotonic() - began

    assert result.returncode != 0
    assert took < 20, f"took {took:.1f}s"
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("CommandError: Cannot reach database 'default'"), lines


def test_a_cycle_that_runs_too_long_is_reported_once_and_when_it_ends(
    planton_process, subprocess_database_url
):
    process = planton_process(
        ["run_planton", "--task", "testapp_idle"],
        subprocess_database_url,
        PLANTON_TEST_IDLE_BLOCK="2.5",
        PLANTON_TEST_SET_SLOW_CYCLE_WARNING="0.5",
    )
    assert process.wait_for_output("testapp_idle: blocking"), process.stdout + process.stderr
    assert process.wait_for_stderr("ended after", timeout=15), process.stderr
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0

    running = [line for line in process.stderr.splitlines() if "has run for" in line]
    assert len(running) == 1, process.stderr
    assert "Cycle of task testapp_idle has run for" in running[0]
    assert "WARNING" in running[0]
    ended = [line for line in process.stderr.splitlines() if "ended after" in line]
    assert len(ended) == 1
    assert "Cycle of task testapp_idle ended after 2." in ended[0]
