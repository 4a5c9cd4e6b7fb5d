"""Where a task's ``task_dispatched`` receivers run, once its cycle has committed.

The receivers are the same whatever the executor, and get the same
arguments (``sender``, ``task_name``, ``instruction``, ``execution``); one
that raises fails its execution; receivers end their executions themselves.
``batch_dispatched`` always goes out in the runner's process, in the cycle's
thread, before the batch is handed to the executor.

- :class:`Inline`: in the cycle's thread, one after another (a receiver that
  hands the work on at once, or a test that wants it synchronous);
- :class:`Threads` (the default): a pool of threads in the ``run_planton``
  process, so that a task of concurrency 10 really works on 10 items at once,
  and the cycle's thread is free to refill a slot as soon as one frees.

Choose per task (``register(task, executor=...)``, ``@task(..., executor=...)``)
or for every task with the setting ``PLANTON_EXECUTOR``.
"""

from .base import STOPPED_REASON, Executor, Inline, fail_unsent
from .choice import default_executor, executor_for
from .threads import QUICK_RECEIVER, QUICK_THREADS, STUCK_RECEIVER, Threads

__all__ = [
    "QUICK_RECEIVER",
    "QUICK_THREADS",
    "STOPPED_REASON",
    "STUCK_RECEIVER",
    "Executor",
    "Inline",
    "Threads",
    "default_executor",
    "executor_for",
    "fail_unsent",
]
