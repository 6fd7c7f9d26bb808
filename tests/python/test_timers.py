# tests/python/test_timers.py: call_later / call_at ordering and timing, loop.time(), and the
# rule that due timers join the ready queue behind callbacks already there (asyncio _run_once).

import asyncio
import time

import pytest


def run_for(loop, seconds):
    loop.call_later(seconds, loop.stop)
    loop.run_forever()


def test_time_is_monotonic_and_close_to_time_monotonic(loop):
    before = time.monotonic()
    t = loop.time()
    after = time.monotonic()
    assert isinstance(t, float)
    assert before - 0.05 <= t <= after + 0.05
    samples = [loop.time() for _ in range(1000)]
    assert samples == sorted(samples)


def test_time_advances_with_wall_clock(loop):
    t0 = loop.time()
    time.sleep(0.05)
    t1 = loop.time()
    assert 0.04 <= t1 - t0 < 1.0


def test_call_later_orders_by_deadline(loop):
    calls = []
    loop.call_later(0.03, calls.append, "c")
    loop.call_later(0.01, calls.append, "a")
    loop.call_later(0.02, calls.append, "b")
    run_for(loop, 0.06)
    assert calls == ["a", "b", "c"]


def test_call_at_orders_by_deadline(loop):
    calls = []
    now = loop.time()
    loop.call_at(now + 0.02, calls.append, 2)
    loop.call_at(now + 0.01, calls.append, 1)
    loop.call_at(now + 0.03, calls.append, 3)
    run_for(loop, 0.06)
    assert calls == [1, 2, 3]


def test_call_later_does_not_fire_early(loop):
    fired = []
    handle = loop.call_later(0.05, lambda: fired.append(loop.time()))
    run_for(loop, 0.1)
    assert len(fired) == 1
    # asyncio runs a timer once time() + clock resolution passes its deadline.
    resolution = time.get_clock_info("monotonic").resolution
    assert fired[0] >= handle.when() - resolution - 1e-3
    assert fired[0] < handle.when() + 0.5


def test_call_later_when_is_now_plus_delay(loop):
    before = loop.time()
    handle = loop.call_later(10, print)
    after = loop.time()
    assert before + 10 <= handle.when() <= after + 10
    handle.cancel()


def test_call_at_when_is_the_given_deadline(loop):
    deadline = loop.time() + 5.25
    handle = loop.call_at(deadline, print)
    assert handle.when() == deadline
    handle.cancel()


def test_call_at_accepts_int_deadline(loop):
    deadline = int(loop.time()) + 100
    handle = loop.call_at(deadline, print)
    assert handle.when() == deadline
    handle.cancel()


def test_equal_deadlines_all_run_in_the_same_iteration(loop):
    # asyncio leaves the order of timers with equal deadlines undefined; all of them become
    # ready in the same iteration, before anything the first of them schedules.
    calls = []
    when = loop.time() + 0.01

    def cb(i):
        if not calls:
            loop.call_soon(calls.append, "soon")
        calls.append(i)

    for i in range(10):
        loop.call_at(when, cb, i)
    run_for(loop, 0.05)
    assert sorted(calls[:10]) == list(range(10))
    assert calls[10:] == ["soon"]


@pytest.mark.parametrize("delay", [0, -1, -1e9], ids=["zero", "negative", "very-negative"])
def test_zero_or_negative_delay_runs_on_next_iteration(loop, delay):
    calls = []
    loop.call_later(delay, calls.append, "timer")
    loop.stop()
    loop.run_forever()
    assert calls == ["timer"]


def test_call_at_in_the_past_runs_on_next_iteration(loop):
    calls = []
    loop.call_at(loop.time() - 100, calls.append, "past")
    loop.stop()
    loop.run_forever()
    assert calls == ["past"]


def test_due_timer_runs_after_callbacks_already_ready(loop):
    # _run_once appends due timers to the ready queue behind what is already there.
    calls = []
    loop.call_soon(calls.append, "soon-1")
    loop.call_later(0, calls.append, "timer")
    loop.call_soon(calls.append, "soon-2")
    loop.stop()
    loop.run_forever()
    assert calls == ["soon-1", "soon-2", "timer"]


def test_timer_scheduled_by_callback_does_not_run_in_same_iteration(loop):
    calls = []

    def cb():
        calls.append("cb")
        loop.call_later(0, calls.append, "timer")

    loop.call_soon(cb)
    loop.stop()
    loop.run_forever()
    assert calls == ["cb"]
    loop.stop()
    loop.run_forever()
    assert calls == ["cb", "timer"]


def test_timer_arguments_are_passed(loop):
    calls = []
    loop.call_later(0, lambda *a: calls.append(a), 1, 2, 3)
    loop.call_at(loop.time(), lambda *a: calls.append(a), "x")
    run_for(loop, 0.02)
    assert calls == [(1, 2, 3), ("x",)]


def test_later_timer_does_not_block_earlier_one(loop):
    calls = []
    late = loop.call_later(30, calls.append, "late")
    loop.call_later(0.01, calls.append, "early")
    t0 = time.monotonic()
    run_for(loop, 0.03)
    assert calls == ["early"]
    assert time.monotonic() - t0 < 1.0
    late.cancel()


def test_loop_sleeps_until_the_next_timer(loop):
    # With nothing ready, the loop waits for the timer instead of returning early or spinning.
    t0 = time.monotonic()
    run_for(loop, 0.1)
    elapsed = time.monotonic() - t0
    assert 0.09 <= elapsed < 1.0


def test_infinite_and_huge_delays_are_accepted_and_never_fire(loop):
    calls = []
    h1 = loop.call_later(float("inf"), calls.append, "inf")
    h2 = loop.call_later(1e30, calls.append, "huge")
    h3 = loop.call_at(float("inf"), calls.append, "inf-at")
    assert h1.when() == float("inf")
    assert h3.when() == float("inf")
    assert h2.when() > loop.time() + 1e29
    t0 = time.monotonic()
    run_for(loop, 0.02)
    assert calls == []
    assert time.monotonic() - t0 < 1.0
    for h in (h1, h2, h3):
        h.cancel()


def test_many_timers_fire_in_deadline_order(loop):
    calls = []
    base = loop.time()
    delays = [((i * 7919) % 100) / 10000 for i in range(200)]  # 0 .. 9.9 ms, shuffled
    for i, d in enumerate(delays):
        loop.call_at(base + d, calls.append, (d, i))
    run_for(loop, 0.05)
    assert len(calls) == 200
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_asyncio_sleep_uses_loop_time(loop):
    async def main():
        t0 = loop.time()
        await asyncio.sleep(0.05)
        return loop.time() - t0

    elapsed = loop.run_until_complete(main())
    assert 0.04 <= elapsed < 1.0
