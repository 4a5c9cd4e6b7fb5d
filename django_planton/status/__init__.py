"""The fleet's status: runners, tasks, outcome counts, durations, read from the database.

The one place for these figures: the admin's dashboard, ``planton_status``
and the Prometheus metrics all read them from here, so they agree. Every
function only reads, and every time is compared with the database's clock
(read once per call), never this host's.

- :mod:`.values`: the frozen values (``FleetStatus``, ``TaskStatus``...) and their JSON;
- :mod:`.reading`: ``fleet_status()`` and ``task_status()``, and what they cost;
- :mod:`.problems`: ``problems()``, the rules of ``planton_status --check``;
- :mod:`.charts`: one task's executions per minute, and how many ran at once.
"""

from .charts import CHART_ROWS, executions_per_minute, running_over_time
from .problems import describe_seconds, problems
from .reading import DURATION_SAMPLE, describe_executor, fleet_status, percentile, task_status
from .values import FleetStatus, OutcomeCounts, RunnerStatus, TaskStatus

__all__ = [
    "CHART_ROWS",
    "DURATION_SAMPLE",
    "FleetStatus",
    "OutcomeCounts",
    "RunnerStatus",
    "TaskStatus",
    "describe_executor",
    "describe_seconds",
    "executions_per_minute",
    "fleet_status",
    "percentile",
    "problems",
    "running_over_time",
    "task_status",
]
