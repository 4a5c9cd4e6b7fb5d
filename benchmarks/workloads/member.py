"""One runner of the fleet (workload 6b): a process among several scheduling the same tasks.

Started by :mod:`.fleet`, never by the orchestrator. It builds the fleet's
tasks (:func:`fleet_tasks`), starts a :class:`~django_planton.runner.Runner`,
prints :data:`READY` on stdout, and measures between the ``start`` and
``stop`` lines its parent writes on its stdin: its CPU, the statements it
sent, and when it called each task's schedule (wall clock, shared by every
process of the machine, so that the parent can merge the attempts of a task
made by all the runners). Then it stops its runner and prints its result.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from benchmarks.protocol import Result
from django_planton import ScheduleContext, Task
from django_planton.executors import Threads
from django_planton.registry import registry
from django_planton.runner import Runner
from django_planton.signals import task_dispatched
from example_site.accounts.models import UserAccount

from .common import CallCounter, Params, Progress, busy_delay, idle_tasks
from .drain import per_instruction_receiver
from .meters import Meter, counting, peak_rss_mb, total

#: What a member prints once its runner has started.
READY = "FLEET-MEMBER-READY"
#: The busy tasks' names: ``bench_busy_07``.
BUSY_PREFIX = "bench_busy_"
#: The most executions of one busy task running at once.
BUSY_CONCURRENCY = 5
#: Receiver threads of one runner. ``Threads()`` by default starts one per
#: execution in flight, up to 100, each keeping a connection of its own until
#: the runner stops: 8 runners sharing 20 tasks of concurrency 5 then opened
#: more than the server's 200 connections within seconds.
RECEIVER_THREADS = 8


class BusySchedule:
    """Claims accounts owed an e-mail among ids ``first``..``last``: one busy task's own work.

    ``send_user_email``'s claim on a range of its own, so that the busy tasks
    never compete for an account, and each task's drain can be checked alone.
    """

    def __init__(self, calls: CallCounter, first: int, last: int) -> None:
        self.calls = calls
        self.first = first
        self.last = last

    def __call__(self, context: ScheduleContext) -> list[int]:
        self.calls.count(context.task_name)
        skipped = [*context.active_task_instructions, *context.held_back_instructions]
        return list(
            UserAccount.objects.awaiting_email()
            .filter(pk__range=(self.first, self.last))
            .exclude(pk__in=[int(instruction) for instruction in skipped])
            .select_for_update(skip_locked=True)
            .order_by("pk")
            .values_list("pk", flat=True)[: context.limit]
        )


def busy_ids(number: int, accounts_per_task: int) -> tuple[int, int]:
    """The first and last account id of busy task ``number`` (ids start at 1)."""
    return number * accounts_per_task + 1, (number + 1) * accounts_per_task


def fleet_tasks(tasks: int, busy: int, accounts_per_task: int, calls: CallCounter) -> list[Task]:
    """``tasks`` tasks: ``busy`` of them drain their own accounts, the others are idle."""
    busy_tasks = [
        Task(
            name=f"{BUSY_PREFIX}{number:02d}",
            schedule=BusySchedule(calls, *busy_ids(number, accounts_per_task)),
            concurrency=BUSY_CONCURRENCY,
            calculate_delay=busy_delay,
        )
        for number in range(busy)
    ]
    return idle_tasks(tasks - busy, calls) + busy_tasks


def wait_for(line: str) -> None:
    """Until the parent writes ``line`` (or goes away: then carry on, to stop cleanly)."""
    while True:
        got = sys.stdin.readline()
        if not got or got.strip() == line:
            return


def run(params: Params) -> Result:
    """Start a runner, say so, measure from ``start`` to ``stop``, stop."""
    counter = counting()
    calls = CallCounter()
    progress = Progress(0)
    tasks = fleet_tasks(params["tasks"], params["busy"], params["accounts_per_task"], calls)
    receiver = per_instruction_receiver(progress)
    threads = Threads(max_workers=RECEIVER_THREADS)
    for task in tasks:
        if task.name.startswith(BUSY_PREFIX):
            registry.register(task, executor=threads)
            task_dispatched.connect(receiver, sender=task, weak=False)
    runner = Runner(tasks)
    runner.start()
    print(READY, flush=True)
    wait_for("start")
    meter = Meter(counter)
    calls.recording = True
    meter.start()
    wait_for("stop")
    meter.stop()
    calls.recording = False
    runner.stop(timeout=30)
    return member_result(meter, calls.times, progress.not_ended)


def member_result(meter: Meter, times: dict[str, list[float]], not_ended: int) -> Result:
    """What the parent merges: this runner's CPU, statements and attempt times."""
    return {
        "wall": meter.wall,
        "cpu": meter.cpu,
        "threads": meter.threads,
        "statements": total(meter.queries),
        "times": {name: _rounded(values) for name, values in times.items()},
        "not_ended": not_ended,
        "peak_rss_mb": peak_rss_mb(),
    }


def _rounded(values: Sequence[float]) -> list[Any]:
    # A tenth of a millisecond is finer than any gap checked; shorter result lines.
    return [round(value, 4) for value in values]
