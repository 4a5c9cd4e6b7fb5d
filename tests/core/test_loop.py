"""The scheduling loop of ``django_planton.core`` (no Django, no database).

Attempt numbers, delays, limits, saturation, independent tasks, scale and the
documented attempt hook.

Timing is never asserted exactly: the loop is polled with :func:`wait_until`
and delays are tiny, so that the suite is fast and stays reliable on a
loaded machine. Every :class:`Planton` made through the ``make_planton``
fixture is stopped when its test ends.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time

import pytest

from django_planton.core import ScheduleContext, Task
from django_planton.errors import UnexpectedStateError

from ..support import Log, nothing, wait_until
from .helpers import TINY, Counter, returning, task

# -- the loop: attempt numbers, delays, saturation ---------------------------------------


def test_first_wait_is_calculate_delay_of_zero(make_planton):
    delay_args = Log()
    first_call = Log()
    started = time.monotonic()

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return 0.15 if attempt_number == 0 else 10

    def schedule(context):
        first_call.append(time.monotonic())
        return []

    make_planton([task(schedule=schedule, delay=delay)])
    assert delay_args.items[:1] == [0]
    assert wait_until(lambda: len(first_call) == 1)
    # Not before the first delay ran out (small margin for clock granularity).
    assert first_call.items[0] - started >= 0.14


def test_attempt_number_grows_on_empty_attempts_and_resets_after_work(make_planton):
    delay_args = Log()

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return TINY

    schedule = returning([], [], ["a"], [], then=[])
    make_planton([task(schedule=schedule, delay=delay)])
    assert wait_until(lambda: len(delay_args) >= 7)
    assert delay_args.items[:7] == [0, 1, 2, 0, 1, 2, 3]
    assert [c.attempt_number for c in schedule.contexts.items[:6]] == [0, 1, 2, 0, 1, 2]


def test_attempt_number_stays_zero_while_work_keeps_coming(make_planton, recorder):
    delay_args = Log()
    numbers = itertools.count()

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return TINY

    def schedule(context):
        return [next(numbers)]

    make_planton([task(schedule=schedule, delay=delay)])
    assert wait_until(lambda: len(recorder.instructions()) >= 5)
    assert set(delay_args.items[:5]) == {0}
    assert recorder.instructions()[:5] == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("active", [["a", "b"], ["a", "b", "c"]])
def test_saturated_task_is_not_scheduled_and_keeps_its_attempt_number(
    make_planton, recorder, active
):
    delay_args = Log()
    active_calls = Counter()
    schedule_calls = Counter()

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return TINY

    def get_active(task_name):
        active_calls()
        return list(active)

    make_planton([task(schedule=schedule_calls, delay=delay, concurrency=2)], get_active=get_active)
    assert wait_until(lambda: active_calls.value >= 4)
    assert schedule_calls.value == 0
    assert set(delay_args.items) == {0}
    assert recorder.errors() == []


def test_saturation_keeps_a_grown_attempt_number(make_planton):
    delay_args = Log()
    full = threading.Event()

    def delay(attempt_number):
        delay_args.append(attempt_number)
        return TINY

    schedule = returning()
    active_calls = Counter()

    def get_active(task_name):
        active_calls()
        return ["x"] if full.is_set() else []

    make_planton([task(schedule=schedule, delay=delay)], get_active=get_active)
    assert wait_until(lambda: len(schedule.contexts) >= 2)
    full.set()
    # Let a cycle that had already read the active list finish.
    calls_at_set = active_calls.value
    assert wait_until(lambda: active_calls.value >= calls_at_set + 2)
    scheduled, seen = len(schedule.contexts), len(delay_args)
    assert wait_until(lambda: len(delay_args) >= seen + 3)
    recent = delay_args.items[seen:]
    assert len(set(recent)) == 1  # unchanged while saturated
    assert recent[0] >= 2
    assert len(schedule.contexts) == scheduled


def test_full_task_does_not_ask_for_a_limit(make_planton, recorder):
    # Step 2 comes before step 3: a custom limit cannot override a full task.
    active_calls = Counter()
    limit_calls = Counter()
    schedule_calls = Counter()

    def calculate_limit(concurrency, active):
        limit_calls()
        return 5

    def get_active(task_name):
        active_calls()
        return ["a", "b"]

    make_planton(
        [task(schedule=schedule_calls, concurrency=2, calculate_limit=calculate_limit)],
        get_active=get_active,
    )
    assert wait_until(lambda: active_calls.value >= 3)
    assert limit_calls.value == 0
    assert schedule_calls.value == 0
    assert recorder.errors() == []


def test_task_is_scheduled_again_once_slots_free_up(make_planton, recorder):
    busy = Log()

    def get_active(task_name):
        busy.append(task_name)
        return ["a", "b"] if len(busy) <= 3 else ["a"]

    schedule = returning(["c"])
    make_planton([task(schedule=schedule, concurrency=2)], get_active=get_active)
    assert wait_until(lambda: recorder.instructions() == ["c"])
    first = schedule.contexts.items[0]
    assert len(busy) >= 4
    assert first.limit == 1
    assert list(first.active_task_instructions) == ["a"]


def test_schedule_context_contents(make_planton):
    schedule = returning()
    make_planton([task("ctx", schedule, concurrency=3)], get_active=lambda name: ["x"])
    assert wait_until(lambda: len(schedule.contexts) >= 1)
    context = schedule.contexts.items[0]
    assert isinstance(context, ScheduleContext)
    assert context.task_name == "ctx"
    assert list(context.active_task_instructions) == ["x"]
    assert all(isinstance(item, str) for item in context.active_task_instructions)
    assert context.concurrency == 3
    assert context.limit == 2
    assert context.attempt_number == 0


def test_get_active_is_called_with_the_task_name_before_each_schedule(make_planton):
    order = Log()

    def get_active(task_name):
        order.append(("active", task_name))
        return []

    def schedule(context):
        order.append(("schedule", context.task_name))
        return []

    make_planton([task("a", schedule)], get_active=get_active)
    assert wait_until(lambda: len(order) >= 6)
    items = order.items[:6]
    assert items == [("active", "a"), ("schedule", "a")] * 3


# -- limits -------------------------------------------------------------------------


def test_calculate_limit_gets_concurrency_and_active_and_sets_the_limit(make_planton, recorder):
    limit_args = Log()

    def calculate_limit(concurrency, active):
        limit_args.append((concurrency, list(active)))
        return 4

    schedule = returning(["1", "2", "3", "4"])
    make_planton(
        [task(schedule=schedule, concurrency=2, calculate_limit=calculate_limit)],
        get_active=lambda name: ["z"],
    )
    assert wait_until(lambda: len(recorder.instructions()) == 4)
    assert limit_args.items[0] == (2, ["z"])
    assert schedule.contexts.items[0].limit == 4
    assert recorder.instructions() == ["1", "2", "3", "4"]
    assert recorder.errors() == []


def test_limit_zero_means_schedule_is_not_called(make_planton, recorder):
    limit_calls = Counter()
    schedule_calls = Counter()

    def calculate_limit(concurrency, active):
        limit_calls()
        return 0

    make_planton([task(schedule=schedule_calls, calculate_limit=calculate_limit)])
    assert wait_until(lambda: limit_calls.value >= 3)
    assert schedule_calls.value == 0
    assert recorder.errors() == []


@pytest.mark.parametrize("bad_limit", [-1, -100, 1.5, 1.0, "1", None, True, False])
def test_invalid_limit_is_an_unexpected_state_error(make_planton, recorder, bad_limit):
    schedule_calls = Counter()
    make_planton([task(schedule=schedule_calls, calculate_limit=lambda c, a: bad_limit)])
    assert wait_until(lambda: len(recorder.errors()) >= 3)  # reported, and the loop goes on
    errors = recorder.errors()
    assert all(isinstance(error, UnexpectedStateError) for error in errors)
    assert errors[0].code == "UNEXPECTED_STATE_ERROR"
    assert all(event.task_name == "t" for event in recorder.error_events.items)
    assert schedule_calls.value == 0


def test_failing_calculate_limit_reports_the_users_exception(make_planton, recorder):
    boom = RuntimeError("limit boom")
    schedule_calls = Counter()

    def calculate_limit(concurrency, active):
        raise boom

    make_planton([task(schedule=schedule_calls, calculate_limit=calculate_limit)])
    assert wait_until(lambda: len(recorder.errors()) >= 2)
    assert all(error is boom for error in recorder.errors())
    assert schedule_calls.value == 0


# -- independence of tasks -------------------------------------------------------------


def test_slow_schedule_does_not_delay_other_tasks(make_planton, gate):
    slow_entered = threading.Event()
    fast_calls = Counter()

    def slow(context):
        slow_entered.set()
        gate.wait(5)
        return []

    make_planton([task("slow", slow), task("fast", fast_calls)])
    assert slow_entered.wait(2)
    before = fast_calls.value
    assert wait_until(lambda: fast_calls.value >= before + 5)
    assert not gate.is_set()


def test_slow_get_active_of_one_task_does_not_delay_other_tasks(make_planton, gate):
    slow_entered = threading.Event()
    fast_calls = Counter()

    def get_active(task_name):
        if task_name == "slow":
            slow_entered.set()
            gate.wait(5)
        return []

    make_planton([task("slow"), task("fast", fast_calls)], get_active=get_active)
    assert slow_entered.wait(2)
    before = fast_calls.value
    assert wait_until(lambda: fast_calls.value >= before + 5)


def test_long_delay_of_one_task_does_not_hold_up_another(make_planton):
    slow_calls = Counter()
    fast_calls = Counter()
    make_planton(
        [
            Task("sleepy", slow_calls, calculate_delay=lambda n: 10),
            task("eager", fast_calls),
        ]
    )
    assert wait_until(lambda: fast_calls.value >= 5)
    assert slow_calls.value == 0


def test_each_task_keeps_its_own_attempt_number(make_planton):
    numbers = itertools.count()
    idle = returning()
    busy = returning()

    def working(context):
        busy(context)
        return [next(numbers)]

    make_planton([task("idle", idle), task("busy", working)])
    assert wait_until(lambda: len(idle.contexts) >= 4 and len(busy.contexts) >= 4)
    assert [c.attempt_number for c in idle.contexts.items[:4]] == [0, 1, 2, 3]
    assert {c.attempt_number for c in busy.contexts.items} == {0}


# -- scale and threads -------------------------------------------------------------------


def test_hundreds_of_idle_tasks_start_and_stop_quickly_without_a_thread_each(make_planton):
    baseline = threading.active_count()
    schedule_calls = Counter()
    tasks = [Task(f"task-{i}", schedule_calls, calculate_delay=lambda n: 10) for i in range(300)]
    planton = make_planton(tasks, start=False)
    started = time.monotonic()
    planton.start()
    assert time.monotonic() - started < 1.0
    time.sleep(0.05)
    assert threading.active_count() <= baseline + 40
    started = time.monotonic()
    planton.stop()
    assert time.monotonic() - started < 1.0
    assert schedule_calls.value == 0


def test_hundreds_of_busy_tasks_share_a_bounded_pool(make_planton):
    baseline = threading.active_count()
    seen = Log()
    peak = Log()

    def schedule(context):
        seen.append(context.task_name)
        peak.append(threading.active_count())
        return []

    names = [f"busy-{i}" for i in range(200)]
    planton = make_planton([task(name, schedule, delay=lambda n: 0.005) for name in names])
    assert wait_until(lambda: set(seen.items) >= set(names), timeout=3)
    assert max(peak.items) <= baseline + 40
    planton.stop()


# -- the documented attempt hook -------------------------------------------------


def test_around_attempt_wraps_every_attempt_in_its_worker_thread(make_planton):
    entered = Log()

    @contextlib.contextmanager
    def around(names):
        entered.append((tuple(names), threading.current_thread().name, "enter"))
        yield
        entered.append((tuple(names), threading.current_thread().name, "exit"))

    calls = Log()

    def schedule(context):
        calls.append(threading.current_thread().name)
        return []

    planton = make_planton(
        [Task(name="hooked", schedule=schedule, calculate_delay=lambda attempt: 0.01)],
        around_attempt=around,
    )
    assert wait_until(lambda: len(calls) >= 2)
    planton.stop(timeout=5)
    enters = [item for item in entered.items if item[2] == "enter"]
    exits = [item for item in entered.items if item[2] == "exit"]
    assert len(enters) == len(exits) >= len(calls) >= 2
    assert {names for names, _, _ in enters} == {("hooked",)}
    assert {thread for _, thread, _ in enters} <= set(calls.items)
    assert planton.max_workers == 1


def test_a_raising_attempt_hook_is_reported_and_the_loop_goes_on(make_planton, recorder):
    def around(names):
        raise RuntimeError("hook broke")

    make_planton(
        [Task(name="hooked", schedule=nothing, calculate_delay=lambda attempt: 0.01)],
        around_attempt=around,
    )
    assert wait_until(lambda: len(recorder.error_events) >= 2)
    assert all("hook broke" in str(event.error) for event in recorder.error_events.items)
