"""A pool of threads in which the thread idle the shortest takes the next call.

``concurrent.futures.ThreadPoolExecutor`` hands each call to whichever idle
thread its queue wakes, so that over a run every thread it ever started
takes a share of the calls. For the receivers of :class:`~django_planton.
executors.Threads` each thread is also a database connection: a drain of
quick receivers then keeps fifty connections (and fifty server processes)
busy by turns where four would do, and pays for it in CPU on both sides.
Here idle threads wait on a stack: the most recently busy one is woken
first, and the others stay asleep, their connections idle.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable

__all__ = ["LifoThreadPool"]

logger = logging.getLogger("django_planton")


class _Worker:
    """One thread's mailbox: the call it runs next, and the event that wakes it."""

    __slots__ = ("call", "wake")

    def __init__(self, call: Callable[[], object] | None) -> None:
        self.call = call
        self.wake = threading.Event()


class LifoThreadPool:
    """Runs calls in up to ``max_workers`` threads, started as needed and kept.

    Calls handle their own errors; one that raises anyway is logged. Calls
    submitted while every thread is busy wait in order. The threads are
    daemons: a call that never returns does not keep the process alive.
    """

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, not {max_workers!r}")
        self.max_workers = max_workers
        self._prefix = thread_name_prefix
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # a stack: the last one in is woken first
        self._backlog: deque[Callable[[], object]] = deque()
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def threads_started(self) -> int:
        with self._lock:
            return len(self._threads)

    def submit(self, call: Callable[[], object]) -> None:
        """Run ``call`` in an idle thread, a new one, or once a thread is free."""
        with self._lock:
            if self._closed:
                raise RuntimeError("The pool is shut down.")
            if self._idle:
                worker = self._idle.pop()
                worker.call = call
                worker.wake.set()
                return
            if len(self._threads) >= self.max_workers:
                self._backlog.append(call)
                return
            thread = threading.Thread(
                target=self._work,
                args=(_Worker(call),),
                name=f"{self._prefix}_{next(self._numbers)}",
                daemon=True,
            )
            self._threads.append(thread)
        thread.start()

    def shutdown(self, *, wait: bool = True, timeout: float | None = None) -> bool:
        """Drop the calls not started, end the idle threads, and (``wait``) join the busy ones.

        Returns True when every thread ended within ``timeout``.
        """
        with self._lock:
            self._closed = True
            self._backlog.clear()
            idle, self._idle = self._idle, []
            threads = list(self._threads)
        for worker in idle:
            worker.wake.set()  # with no call: the thread ends
        if not wait:
            return True
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        return not any(thread.is_alive() for thread in threads)

    def _work(self, worker: _Worker) -> None:
        while worker.call is not None:
            call, worker.call = worker.call, None
            try:
                call()
            except Exception:  # a call's own error handling failed: keep the thread
                logger.exception("A call in thread %s raised.", threading.current_thread().name)
            with self._lock:
                if self._backlog:
                    worker.call = self._backlog.popleft()
                    continue
                if self._closed:
                    return
                worker.wake.clear()
                self._idle.append(worker)
            worker.wake.wait()
