"""Which executor a task's receivers get: its own, or the setting ``PLANTON_EXECUTOR``."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .base import Executor
from .threads import Threads

if TYPE_CHECKING:
    from ..core import Task

__all__ = ["default_executor", "executor_for"]

_defaults: dict[object, Executor] = {}
_defaults_lock = threading.Lock()


def default_executor() -> Executor:
    """The executor of tasks that name none: the setting ``PLANTON_EXECUTOR``.

    An :class:`Executor` instance, or the dotted path of a class that takes
    no arguments; :class:`Threads` by default. One instance per value, so
    that the tasks share one pool.
    """
    from django.utils.module_loading import import_string

    from ..conf import raw_setting
    from ..errors import PlantonError

    value = raw_setting("PLANTON_EXECUTOR")
    if isinstance(value, Executor):
        return value
    key = value if isinstance(value, str) else repr(value)
    with _defaults_lock:
        if key not in _defaults:
            if value is None:
                _defaults[key] = Threads()
            elif isinstance(value, str):
                made = import_string(value)()
                if not isinstance(made, Executor):
                    raise PlantonError(f"PLANTON_EXECUTOR {value!r} is not an Executor class.")
                _defaults[key] = made
            else:
                raise PlantonError(
                    f"PLANTON_EXECUTOR must be an Executor or a dotted path, not {value!r}."
                )
        return _defaults[key]


def executor_for(task: Task) -> Executor:
    """The executor of a task: the one it was registered with, else the default."""
    from ..registry import registry

    chosen = registry.executor_of(task.name)
    return chosen if isinstance(chosen, Executor) else default_executor()
