"""Where an application's tasks are registered, from ``AppConfig.ready()``.

The registry imports nothing from Django, so that ``import django_planton``
works before settings are configured.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from .core import DEFAULT_RETRY, DelayFunction, LimitFunction, RetryPolicy, ScheduleFunction, Task
from .errors import DuplicateTaskNameError, PlantonError

if TYPE_CHECKING:
    from .executors import Executor

__all__ = ["TaskRegistry", "register", "registry", "task"]


class TaskRegistry:
    """The tasks that ``run_planton`` schedules, by name."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._executors: dict[str, Executor] = {}
        self._lock = threading.Lock()

    def register(self, task: Task, *, executor: Executor | None = None) -> Task:
        """Register ``task`` and return it.

        ``executor`` says where its ``task_dispatched`` receivers run
        (:mod:`django_planton.executors`); None: the setting ``PLANTON_EXECUTOR``.
        Registering the same object again does nothing (``ready()`` may run
        more than once in tests); another task under a taken name raises
        :class:`~django_planton.errors.DuplicateTaskNameError`.
        """
        if not isinstance(task, Task):
            raise PlantonError(f"register() takes a django_planton.Task, got {task!r}.")
        if executor is not None and not callable(getattr(executor, "submit", None)):
            raise PlantonError(
                f"executor must be a django_planton.executors.Executor, got {executor!r}."
            )
        with self._lock:
            existing = self._tasks.get(task.name)
            if existing is not None and existing is not task:
                raise DuplicateTaskNameError(task.name)
            if existing is None:
                self._executors.pop(task.name, None)  # a new registration names its own
            self._tasks[task.name] = task
            if executor is not None:
                self._executors[task.name] = executor
        return task

    def executor_of(self, name: str) -> Executor | None:
        """The executor the task was registered with; None when it named none."""
        return self._executors.get(name)

    def task(
        self,
        name: str | None = None,
        *,
        concurrency: int = 1,
        calculate_delay: DelayFunction | None = None,
        calculate_limit: LimitFunction | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        executor: Executor | None = None,
    ) -> Callable[[ScheduleFunction], Task]:
        """Decorate a schedule function to register it as a task.

        The decorated name becomes the :class:`~django_planton.core.Task`
        (use it as the ``sender`` of ``task_dispatched``); the task's name
        defaults to the function's name.
        """

        def decorator(schedule: ScheduleFunction) -> Task:
            return self.register(
                Task(
                    name=name or schedule.__name__,
                    schedule=schedule,
                    concurrency=concurrency,
                    calculate_delay=calculate_delay,
                    calculate_limit=calculate_limit,
                    retry=retry,
                ),
                executor=executor,
            )

        return decorator

    def unregister(self, name: str) -> None:
        with self._lock:
            self._tasks.pop(name, None)
            self._executors.pop(name, None)

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise KeyError(
                f"Unknown task {name!r}; registered: {', '.join(self.names()) or 'none'}."
            ) from None

    def get_or_none(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def select(self, names: Sequence[str] | None = None) -> list[Task]:
        """The named tasks (all of them when ``names`` is empty), sorted by name."""
        if not names:
            return [self._tasks[name] for name in self.names()]
        return [self.get(name) for name in dict.fromkeys(names)]

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self.select())

    def __len__(self) -> int:
        return len(self._tasks)


#: The registry that ``run_planton`` reads.
registry = TaskRegistry()
register = registry.register
task = registry.task
