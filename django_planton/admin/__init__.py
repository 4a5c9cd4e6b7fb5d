"""Admin for watching executions and steering tasks without a deploy.

Executions are history: read-only for everyone. Terminating running ones is
an action that needs the ``terminate_maintenancetaskexecution`` permission.
Failing instructions are read-only too; releasing them ("retry now") and
giving them up are actions that need the change permission on them.
"""

from .executions import MaintenanceTaskExecutionAdmin, OutcomeFilter
from .failing import FailingInstructionAdmin, FailingInstructionInline, FailingStateFilter
from .runners import RunnerProcessAdmin
from .tasks import MaintenanceTaskAdmin

__all__ = [
    "FailingInstructionAdmin",
    "FailingInstructionInline",
    "FailingStateFilter",
    "MaintenanceTaskAdmin",
    "MaintenanceTaskExecutionAdmin",
    "OutcomeFilter",
    "RunnerProcessAdmin",
]
