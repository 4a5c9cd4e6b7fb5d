"""Workload 1, by the original planton on Node: ``benchmarks/node/drain.mjs`` drains the accounts.

This process does what it does for every run, around a Node process that
does the measuring: it resets the tables and creates the task's row, runs
``node benchmarks/node/drain.mjs JSON`` (the database from ``DATABASE_URL``,
which it inherits), reads that process's result line, and checks the tables
with the same rules as every drain (:func:`.tables.drained_problems`). Its
figures (wall and CPU time, statements, peak memory) are the Node
process's own: this one only waits for it.

What the Node process does per instruction is the psycopg baseline's work
(``mark="claim"``), driven by planton: see the README.
"""

from __future__ import annotations

import json
import subprocess
import sys

from django.db import connection

from benchmarks.protocol import Result, decode
from django_planton import Task
from django_planton.runner import sync_tasks

from .common import Params
from .tables import drained_problems, reset_tables

#: The Node package of the benchmark: ``package.json``, its lock file, the script.
NODE_DIR = "benchmarks/node"
SCRIPT = f"{NODE_DIR}/drain.mjs"
TASK_NAME = "bench_node"
#: How long past its own timeout the Node process may run before it is killed.
KILL_GRACE = 60


def run(params: Params) -> Result:
    """Reset, let Node drain, then check the tables as for any drain."""
    accounts, concurrency, timeout = params["accounts"], params["concurrency"], params["timeout"]
    reset_tables(accounts)
    sync_tasks([Task(name=TASK_NAME, schedule=lambda context: [], concurrency=concurrency)])
    connection.close()  # Node has the database to itself while it measures
    node_params = {**params, "task": TASK_NAME}
    try:
        process = subprocess.run(
            ["node", SCRIPT, json.dumps(node_params)],
            stdout=subprocess.PIPE,
            stderr=sys.stderr,  # the orchestrator's log of this run
            text=True,
            timeout=timeout + KILL_GRACE,
        )
    except subprocess.TimeoutExpired:
        return {"problems": [f"node killed after {timeout + KILL_GRACE} s"]}
    result = decode(process.stdout)
    if result is None:
        return {"problems": [f"node printed no result (exit {process.returncode})"]}
    problems = list(result.get("problems", []))
    if process.returncode != 0 and not problems:
        problems.append(f"node exited {process.returncode}")
    problems += drained_problems(TASK_NAME, accounts, concurrency)
    return {**result, "threads": {}, "problems": problems}
