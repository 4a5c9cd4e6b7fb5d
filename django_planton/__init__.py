"""django-planton: database-driven scheduling of recurring maintenance work.

Register tasks from your ``AppConfig.ready()``::

    import django_planton

    @django_planton.task(name="send_user_email", concurrency=2)
    def send_user_email(context):
        ...

or build a :class:`Task` and pass it to :func:`register`.
"""

from .core import RetryPolicy, ScheduleContext, Task
from .errors import (
    DuplicateTaskNameError,
    InvalidTaskConfigurationError,
    PlantonError,
    UnexpectedStateError,
    UnexpectedTaskInstructionsError,
)
from .registry import register, registry, task

__all__ = [
    "DuplicateTaskNameError",
    "InvalidTaskConfigurationError",
    "PlantonError",
    "RetryPolicy",
    "ScheduleContext",
    "Task",
    "UnexpectedStateError",
    "UnexpectedTaskInstructionsError",
    "register",
    "registry",
    "task",
]
