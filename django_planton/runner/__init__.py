"""The Django adapter of the scheduling core: the runner, split by job.

- :mod:`.process`: :class:`Runner`, one ``run_planton`` process and its threads;
- :mod:`.cycle`: :class:`DatabaseCycleRunner`, the cycle's transaction;
- :mod:`.sandbox`: the user's code behind its own savepoint (:mod:`.savepoint`);
- :mod:`.writes`: executions and attempt states; :func:`sync_tasks`;
- :mod:`.dispatch`: the signals after commit;
- :mod:`.housekeeping`: overdue executions and pruning;
- :mod:`.connections`: connection health of the runner's threads.

Statements built by hand live in :mod:`django_planton.sql`.
"""

from .cycle import DatabaseCycleRunner
from .process import Runner
from .writes import sync_tasks

__all__ = ["DatabaseCycleRunner", "Runner", "sync_tasks"]
