"""LifoThreadPool: the thread idle the shortest takes the next call."""

from __future__ import annotations

import logging
import threading

import pytest

from django_planton.core.pool import LifoThreadPool

from ..support import Log, wait_until


@pytest.fixture
def pool():
    made = LifoThreadPool(max_workers=4, thread_name_prefix="test-pool")
    yield made
    made.shutdown(timeout=5)


def run_and_wait(pool: LifoThreadPool, call) -> None:
    done = threading.Event()

    def wrapped() -> None:
        call()
        done.set()

    pool.submit(wrapped)
    assert done.wait(5)


def idle_threads(pool: LifoThreadPool, count: int) -> bool:
    return wait_until(lambda: len(pool._idle) == count)


def test_one_call_at_a_time_runs_in_the_same_thread(pool):
    names = Log()
    for _ in range(20):
        run_and_wait(pool, lambda: names.append(threading.current_thread().name))
        assert idle_threads(pool, 1)
    assert set(names.items) == {"test-pool_0"}
    assert pool.threads_started == 1


def test_the_thread_idle_the_shortest_takes_the_next_call(pool):
    # Three calls at once run in three threads; they go idle in the order 2, 0, 1.
    gates = [threading.Event() for _ in range(3)]
    thread_of: dict[int, str] = {}

    def hold(index: int) -> None:
        thread_of[index] = threading.current_thread().name
        gates[index].wait(5)

    for index in range(3):
        pool.submit(lambda index=index: hold(index))
    assert wait_until(lambda: len(thread_of) == 3)
    for idle, index in enumerate((2, 0, 1), start=1):
        gates[index].set()
        assert idle_threads(pool, idle)
    ran_in = Log()
    run_and_wait(pool, lambda: ran_in.append(threading.current_thread().name))
    assert ran_in.items == [thread_of[1]]
    assert pool.threads_started == 3


def test_calls_beyond_the_most_threads_wait_in_order(pool):
    gate = threading.Event()
    order = Log()
    for _ in range(4):
        pool.submit(lambda: gate.wait(5))
    for index in range(3):
        pool.submit(lambda index=index: order.append(index))
    assert pool.threads_started == 4
    assert order.items == []
    gate.set()
    assert wait_until(lambda: len(order) == 3)
    assert sorted(order.items) == [0, 1, 2]
    assert pool.threads_started == 4


def test_a_call_that_raises_is_logged_and_its_thread_kept(pool, caplog):
    def breaks() -> None:
        raise RuntimeError("receiver bug")

    with caplog.at_level(logging.ERROR, logger="django_planton"):
        pool.submit(breaks)
        assert idle_threads(pool, 1)
    assert "receiver bug" in caplog.text
    run_and_wait(pool, lambda: None)
    assert pool.threads_started == 1


def test_shutdown_drops_calls_not_started_and_ends_every_thread():
    pool = LifoThreadPool(max_workers=1, thread_name_prefix="test-pool")
    gate = threading.Event()
    ran = Log()
    pool.submit(lambda: gate.wait(5))
    pool.submit(lambda: ran.append("dropped"))
    threading.Timer(0.2, gate.set).start()
    assert pool.shutdown(timeout=5)
    assert ran.items == []
    assert not any(thread.is_alive() for thread in pool._threads)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: None)


def test_max_workers_below_one_is_refused():
    with pytest.raises(ValueError, match="max_workers"):
        LifoThreadPool(max_workers=0, thread_name_prefix="test-pool")
