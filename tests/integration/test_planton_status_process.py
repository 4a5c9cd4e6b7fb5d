"""``manage.py planton_status --check`` as a real process: its exit code reaches the shell.

A container's HEALTHCHECK and a cron line read the exit code alone: 1 when
no runner is alive, 0 once one has recorded itself.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

# Records an alive runner through the ORM, in the subprocess's own database.
RECORD_A_RUNNER = """
from datetime import timedelta
from django_planton.models import RunnerProcess
from django_planton.sql import read_database_now
now = read_database_now("default")
RunnerProcess.objects.create(
    hostname="health-check", pid=4242, started_at=now, last_seen_at=now,
    heartbeat_interval=5.0, dead_after=now + timedelta(hours=1),
)
"""


def test_check_exits_1_without_a_runner_and_0_with_one(manage, subprocess_database_url):
    failing = manage(["planton_status", "--check"], subprocess_database_url)
    assert failing.returncode == 1, failing.stderr
    assert failing.stdout == "No run_planton process is alive (none has recorded itself).\n"
    assert "Traceback" not in failing.stderr

    recorded = manage(["shell", "-c", RECORD_A_RUNNER], subprocess_database_url)
    assert recorded.returncode == 0, recorded.stderr

    passing = manage(["planton_status", "--check", "-v", "0"], subprocess_database_url)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert passing.stdout == ""
