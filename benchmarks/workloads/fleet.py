"""Workload 6b: several runner processes scheduling the same tasks; what does sharing cost?

This process only coordinates: it resets the tables, creates the tasks'
rows, starts ``runners`` member processes (:mod:`.member`, each a
:class:`~django_planton.runner.Runner` on every task), waits until all have
started, lets them warm up, then measures one window:

- each member's CPU, statements and attempt times (its own result);
- on the server, from a connection of the benchmark's own: transactions
  (``pg_stat_database``; statements too when ``pg_stat_statements`` is
  loaded) between the start and the end of the window, less the
  benchmark's own; connections and lock requests waiting (``pg_locks``),
  sampled every 100 ms;
- with ``busy`` tasks: each drains a range of accounts of its own, created
  when the window starts, and the window lasts until every account is
  processed and nothing runs (and at least ``seconds``); then the
  executions, by the runner that dispatched them (their ``hostname`` holds
  its pid), give each runner's share of the work.

Checks: no idle task attempted sooner than its delay allows, whichever
runners attempted it; every busy task's accounts processed by exactly one
execution each, within its concurrency.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from django.db import connection

from benchmarks.checks import (
    already_ended_problems,
    attempt_gap_problems,
    finished_problems,
    merge_attempt_times,
    run_problems,
    shortest_gaps,
)
from benchmarks.protocol import Result, decode
from django_planton.runner import sync_tasks

from .activity import COUNTS_READ, ActivitySampler, connect, server_counts, server_delta
from .common import IDLE_PREFIX, CallCounter, Params, one_second
from .member import BUSY_CONCURRENCY, BUSY_PREFIX, READY, busy_ids, fleet_tasks
from .tables import (
    add_accounts,
    drained_problems,
    executions_by_runner,
    reset_tables,
    unfinished_work,
)

#: How often the lock waits and connections are sampled, and the busy drain polled.
SAMPLE_INTERVAL = 0.1
#: How long the members may take to start (8 Django processes on 2 busy cores).
START_TIMEOUT = 180.0


class Member:
    """One runner process of the fleet, driven through its stdin."""

    def __init__(self, params: Params) -> None:
        command = [sys.executable, "-m", "benchmarks.workloads", "member", json.dumps(params)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr, text=True
        )

    def wait_ready(self) -> bool:
        """Until the member has started its runner; False when it exited first."""
        assert self.process.stdout is not None
        return any(line.strip() == READY for line in self.process.stdout)

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it exited; its missing result says so

    def result(self, timeout: float) -> Result:
        """Its result once it stopped; a result with a problem when it failed."""
        try:
            stdout, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, _ = self.process.communicate()
        result = decode(stdout or "")
        problems = run_problems(result, self.process.returncode, "the fleet's log")
        return {**(result or {}), "problems": problems}


def run(params: Params) -> Result:
    """Start the members, warm up, measure one window, collect and check."""
    runners, tasks, busy = params["runners"], params["tasks"], params["busy"]
    per_task = params.get("accounts_per_task", 0)
    reset_tables(0)
    # The rows exist before the members start, so that they do not all create them at once.
    sync_tasks(fleet_tasks(tasks, busy, per_task, CallCounter()))
    connection.close()  # not counted among the runners' (the busy drain's polls reopen it)
    member_params = {"tasks": tasks, "busy": busy, "accounts_per_task": per_task}
    members = [Member(member_params) for _ in range(runners)]
    started = all(member.wait_ready() for member in members)
    if started:
        time.sleep(params["warmup"])
    window = measure_window(members, busy=busy * per_task, params=params) if started else None
    results = [member.result(timeout=60) for member in members]
    problems = [f"runner {n}: {p}" for n, r in enumerate(results, 1) for p in r["problems"]]
    if not started:
        problems.append("a runner exited before it started")
    if window is None:
        return {"problems": problems}
    return fleet_result(params, window, results, problems)


def measure_window(members: Sequence[Member], *, busy: int, params: Params) -> dict[str, Any]:
    """From ``start`` to ``stop``: the server's counters, the samples, the busy drain."""
    own = 0  # the benchmark's own transactions in the window
    with connect() as conn:
        before = server_counts(conn)
        sampler = ActivitySampler(SAMPLE_INTERVAL)
        for member in members:
            member.say("start")
        began = time.perf_counter()
        finished, drained_after = True, None
        if busy:
            add_accounts(busy)
            own += 1
            finished, polls = wait_drained(params["timeout"])
            drained_after = time.perf_counter() - began
            own += polls
        # At least ``seconds``: the idle tasks' cadence needs several delays to show.
        time.sleep(max(0.0, params["seconds"] - (time.perf_counter() - began)))
        for member in members:
            member.say("stop")
        wall = time.perf_counter() - began
        samples = sampler.stop()
        after = server_counts(conn)
    own += len(samples) + COUNTS_READ
    return {
        "wall": wall,
        "drained_after": drained_after,
        "finished": finished,
        "samples": samples,
        "server": server_delta(before, after, own),
    }


def wait_drained(timeout: float) -> tuple[bool, int]:
    """Until every account is processed and no execution runs, or one failed.

    Whether the wait ended in time, and the polls. A failed execution ends
    the wait at once: the retry policy holds its account back, so the drain
    would not end; the drain check reports the failure.
    """
    deadline = time.monotonic() + timeout
    polls = 0
    while time.monotonic() < deadline:
        polls += 1
        owed, running, failed = unfinished_work()
        if failed or (not owed and not running):
            return True, polls
        time.sleep(SAMPLE_INTERVAL)
    return False, polls


def fleet_result(
    params: Params, window: dict[str, Any], members: list[Result], problems: list[str]
) -> Result:
    """The fleet table's figures, and the checks of the window."""
    wall, samples = window["wall"], window["samples"]
    busy, per_task = params["busy"], params.get("accounts_per_task", 0)
    times = merge_attempt_times([member.get("times", {}) for member in members])
    idle_times = {task: values for task, values in times.items() if task.startswith(IDLE_PREFIX)}
    by_runner = executions_by_runner() if busy else {}
    pids = [member.get("pid") for member in members]
    dispatched = [
        sum(count for (_, host), count in by_runner.items() if host.endswith(f":{pid}"))
        for pid in pids
    ]
    by_task: dict[str, list[int]] = {}
    for (task, _), count in by_runner.items():
        by_task.setdefault(task, []).append(count)
    problems = problems + attempt_gap_problems(idle_times, one_second(0))
    if busy:
        problems += finished_problems(window["finished"], params["timeout"])
        problems += already_ended_problems(sum(m.get("not_ended", 0) for m in members))
        for number in range(busy):
            problems += [
                f"{BUSY_PREFIX}{number:02d}: {problem}"
                for problem in drained_problems(
                    f"{BUSY_PREFIX}{number:02d}",
                    per_task,
                    BUSY_CONCURRENCY,
                    ids=busy_ids(number, per_task),
                )
            ]
    gaps = shortest_gaps(idle_times)
    idle_count = params["tasks"] - busy
    return {
        "runners": params["runners"],
        "tasks": params["tasks"],
        "busy": busy,
        "seconds": wall,
        "idle_attempts": sum(len(values) for values in idle_times.values()),
        "idle_attempts_per_s": sum(len(values) for values in idle_times.values()) / wall,
        "idle_asked_per_s": idle_count / one_second(0),
        "attempts": sum(len(values) for values in times.values()),
        "attempts_by_runner": [
            sum(len(values) for values in member.get("times", {}).values()) for member in members
        ],
        "dispatched_by_runner": dispatched,
        # How much of each busy task's work its busiest runner dispatched (1.0: all of it).
        "top_runner_share_by_task": {
            task: max(counts) / sum(counts) for task, counts in by_task.items()
        },
        "instructions": busy * per_task,
        "drained_after": window["drained_after"],
        "cpu_by_runner": [
            member["cpu"] / member["wall"] if member.get("wall") else None for member in members
        ],
        "client_statements": sum(member.get("statements", 0) for member in members),
        "server": window["server"],
        "waiting_max": max((s.waiting for s in samples), default=None),
        "waiting_mean": statistics.fmean(s.waiting for s in samples) if samples else None,
        "waiting_share": sum(1 for s in samples if s.waiting) / len(samples) if samples else None,
        "connections_max": max((s.connections for s in samples), default=None),
        "waiting_for": dict(Counter(kind for s in samples for kind in s.kinds.split("; ") if kind)),
        "shortest_gap": min(gaps.values()).seconds if gaps else None,
        "peak_rss_mb": max((member.get("peak_rss_mb", 0.0) for member in members), default=0.0),
        "problems": problems,
    }
