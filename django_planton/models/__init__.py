"""The tables of django-planton, one module each, after the reference schema.

- :mod:`.tasks`: ``maintenance_task``, one row per registered task, its
  operator's settings and the attempt state the runners share;
- :mod:`.executions`: ``maintenance_task_execution``, one row per dispatched
  instruction, and ``complete()``, ``fail()``, ``heartbeat()``, ``tracking()``;
- :mod:`.failing`: the instructions a retry policy holds back;
- :mod:`.runners`: the ``run_planton`` processes alive, by their heartbeats.
"""

from ..states import ExecutionState, Outcome, describe_error
from .executions import MaintenanceTaskExecution
from .failing import FailingInstruction
from .runners import RunnerProcess
from .tasks import MaintenanceTask

__all__ = [
    "ExecutionState",
    "FailingInstruction",
    "MaintenanceTask",
    "MaintenanceTaskExecution",
    "Outcome",
    "RunnerProcess",
    "describe_error",
]
