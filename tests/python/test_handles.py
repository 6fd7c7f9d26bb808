# tests/python/test_handles.py: Handle and TimerHandle as returned by call_soon / call_later /
# call_at: cancel, cancelled, when, get_context, ordering, equality and repr (asyncio events.py).

import asyncio
import contextvars
import gc
import sys
import weakref

import pytest


def run_once(loop):
    loop.stop()
    loop.run_forever()


def target():
    pass


def test_cancel_marks_handle_cancelled_and_is_idempotent(loop):
    h = loop.call_soon(target)
    assert h.cancelled() is False
    assert h.cancel() is None
    assert h.cancelled() is True
    h.cancel()
    assert h.cancelled() is True


def test_cancelled_call_soon_never_runs(loop):
    calls = []
    h = loop.call_soon(calls.append, "cancelled")
    loop.call_soon(calls.append, "kept")
    h.cancel()
    run_once(loop)
    run_once(loop)
    assert calls == ["kept"]


def test_cancelled_timer_never_runs(loop):
    calls = []
    h = loop.call_later(0.01, calls.append, "cancelled")
    loop.call_later(0.01, calls.append, "kept")
    h.cancel()
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert calls == ["kept"]
    assert h.cancelled() is True


def test_cancel_within_the_same_iteration(loop):
    calls = []
    handles = {}

    def first():
        calls.append("first")
        handles["second"].cancel()

    loop.call_soon(first)
    handles["second"] = loop.call_soon(calls.append, "second")
    loop.call_soon(calls.append, "third")
    run_once(loop)
    run_once(loop)
    assert calls == ["first", "third"]


def test_timer_cancelled_after_becoming_ready_does_not_run(loop):
    # Both timers are due in the same iteration and move to the ready queue together; the first
    # cancels the second, which then must not run.
    calls = []
    handles = {}
    now = loop.time()

    def first():
        calls.append("first")
        handles["second"].cancel()

    loop.call_at(now - 2, first)
    handles["second"] = loop.call_at(now - 1, calls.append, "second")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert calls == ["first"]


def test_callback_cancels_due_timer_before_it_runs(loop):
    calls = []
    timer = loop.call_later(0, calls.append, "timer")
    loop.call_soon(lambda: (calls.append("soon"), timer.cancel()))
    run_once(loop)
    run_once(loop)
    assert calls == ["soon"]


def test_cancel_after_running_has_no_effect_on_the_loop(loop):
    calls = []
    h = loop.call_soon(calls.append, 1)
    t = loop.call_later(0, calls.append, 2)
    run_once(loop)
    assert sorted(calls) == [1, 2]
    h.cancel()
    t.cancel()
    assert h.cancelled() and t.cancelled()
    run_once(loop)
    assert sorted(calls) == [1, 2]


def test_cancel_releases_callback_and_arguments(loop):
    class Arg:
        pass

    class Callback:
        def __call__(self, arg):
            pass

    arg, cb = Arg(), Callback()
    refs = [weakref.ref(arg), weakref.ref(cb)]
    h = loop.call_soon(cb, arg)
    t = loop.call_later(60, cb, arg)
    del arg, cb
    h.cancel()
    t.cancel()
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_handle_released_after_it_ran(loop):
    class Arg:
        pass

    arg = Arg()
    ref = weakref.ref(arg)
    loop.call_soon(lambda a: None, arg)
    del arg
    run_once(loop)
    gc.collect()
    assert ref() is None


def test_many_cancelled_timers_leave_the_rest_working(loop):
    calls = []
    handles = [loop.call_later(0.001 * (i % 10), calls.append, i) for i in range(1000)]
    for i, h in enumerate(handles):
        if i % 10:
            h.cancel()
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert sorted(calls) == list(range(0, 1000, 10))


def test_timer_when_matches_call_at(loop):
    when = loop.time() + 100
    h = loop.call_at(when, target)
    assert h.when() == when
    h.cancel()
    assert h.when() == when


def test_handle_get_context_is_the_context_used(loop):
    ctx = contextvars.copy_context()
    h = loop.call_soon(target, context=ctx)
    t = loop.call_later(10, target, context=ctx)
    if not hasattr(h, "get_context"):
        if sys.version_info >= (3, 12):
            pytest.fail("Handle.get_context() exists since Python 3.12")
        pytest.skip("Handle.get_context() is new in Python 3.12")
    assert h.get_context() is ctx
    assert t.get_context() is ctx
    h2 = loop.call_soon(target)
    assert isinstance(h2.get_context(), contextvars.Context)
    assert h2.get_context() is not ctx
    t.cancel()


def test_timer_handles_order_by_deadline(loop):
    now = loop.time()
    early = loop.call_at(now + 10, target)
    late = loop.call_at(now + 20, target)
    assert early < late
    assert early <= late
    assert late > early
    assert late >= early
    assert not (late < early)
    assert not (early > late)
    assert early != late
    assert sorted([late, early]) == [early, late]
    early.cancel()
    late.cancel()


def test_timer_handles_equal_when_deadline_callback_args_and_state_match(loop):
    when = loop.time() + 10
    a = loop.call_at(when, target, 1)
    b = loop.call_at(when, target, 1)
    other_args = loop.call_at(when, target, 2)
    assert a == b
    assert not (a != b)
    assert a <= b and a >= b
    assert not (a < b) and not (a > b)
    assert hash(a) == hash(b)
    assert a != other_args
    b.cancel()
    assert a != b
    a.cancel()
    other_args.cancel()


def test_timer_handle_le_with_equal_deadline_requires_equality(loop):
    # asyncio: `a <= b` is `a < b or a == b`, so equal deadlines with different callbacks
    # compare neither <= nor >=.
    when = loop.time() + 10
    a = loop.call_at(when, target)
    b = loop.call_at(when, print)
    assert not (a < b) and not (a > b)
    assert not (a <= b) and not (a >= b)
    assert a != b
    a.cancel()
    b.cancel()


def test_timer_handle_hash_follows_deadline(loop):
    when = loop.time() + 10
    h = loop.call_at(when, target)
    assert hash(h) == hash(when)
    h.cancel()


def test_timer_handle_comparison_with_other_types(loop):
    t = loop.call_later(10, target)
    h = loop.call_soon(target)
    assert (t == 1) is False
    assert (t != 1) is True
    assert t != h
    with pytest.raises(TypeError):
        t < 1  # noqa: B015
    with pytest.raises(TypeError):
        t >= "x"  # noqa: B015
    t.cancel()
    h.cancel()


def test_plain_handles_compare_by_identity(loop):
    a = loop.call_soon(target)
    b = loop.call_soon(target)
    assert a == a
    assert a != b
    assert len({a, b}) == 2
    a.cancel()
    b.cancel()


def test_handle_repr_names_the_callback(loop):
    def my_named_callback(x):
        pass

    h = loop.call_soon(my_named_callback, 42)
    text = repr(h)
    assert "my_named_callback" in text  # arguments are shown only in debug mode on 3.13+
    assert "cancelled" not in text
    h.cancel()
    assert "cancelled" in repr(h)


def test_timer_handle_repr_shows_when(loop):
    def my_timer_callback():
        pass

    t = loop.call_later(10, my_timer_callback)
    text = repr(t)
    assert "my_timer_callback" in text
    assert "when=" in text
    assert "cancelled" not in text
    t.cancel()
    text = repr(t)
    assert "cancelled" in text
    assert "when=" in text


def test_call_soon_threadsafe_handle_can_be_cancelled(loop):
    calls = []
    h = loop.call_soon_threadsafe(calls.append, 1)
    h.cancel()
    run_once(loop)
    assert calls == []
    assert h.cancelled()



def test_python_timer_handle_marked_scheduled_cancels_cleanly(loop):
    # Code that builds asyncio.TimerHandle itself (the pure-Python class) and marks it
    # scheduled tells the loop when it is cancelled; that must not raise on either loop.
    handle = asyncio.TimerHandle(loop.time() + 60, lambda: None, (), loop)
    handle._scheduled = True
    handle.cancel()
    assert handle.cancelled()
