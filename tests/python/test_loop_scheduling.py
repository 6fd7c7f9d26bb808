# tests/python/test_loop_scheduling.py: call_soon ordering, iteration boundaries and the argument
# checks of call_soon / call_later / call_at, as asyncio's BaseEventLoop defines them.

import functools

import pytest


def run_once(loop):
    """Run exactly one loop iteration (stop() before run_forever)."""
    loop.stop()
    loop.run_forever()


def test_call_soon_runs_callbacks_in_fifo_order(loop):
    calls = []
    for i in range(100):
        loop.call_soon(calls.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == list(range(100))


def test_call_soon_passes_positional_arguments(loop):
    calls = []
    loop.call_soon(lambda *a: calls.append(a), 1, "two", None)
    loop.call_soon(lambda: calls.append(()))
    run_once(loop)
    assert calls == [(1, "two", None), ()]


def test_call_soon_rejects_keyword_arguments_other_than_context(loop):
    with pytest.raises(TypeError):
        loop.call_soon(print, end="")


def test_call_soon_accepts_any_callable(loop):
    calls = []

    class Callable:
        def __call__(self, x):
            calls.append(("obj", x))

    class Holder:
        def method(self, x):
            calls.append(("method", x))

    loop.call_soon(Callable(), 1)
    loop.call_soon(Holder().method, 2)
    loop.call_soon(functools.partial(calls.append, ("partial", 3)))
    loop.call_soon(calls.append, ("builtin", 4))
    run_once(loop)
    assert calls == [("obj", 1), ("method", 2), ("partial", 3), ("builtin", 4)]


def test_call_soon_returns_a_handle(loop):
    h = loop.call_soon(print)
    assert h.cancelled() is False
    h.cancel()


def test_callbacks_scheduled_during_an_iteration_run_in_the_next(loop):
    order = []

    def a():
        order.append("a")
        loop.call_soon(c)

    def b():
        order.append("b")

    def c():
        order.append("c")

    loop.call_soon(a)
    loop.call_soon(b)
    run_once(loop)
    assert order == ["a", "b"]
    run_once(loop)
    assert order == ["a", "b", "c"]


def test_self_rescheduling_callback_runs_once_per_iteration(loop):
    count = [0]

    def again():
        count[0] += 1
        loop.call_soon(again)

    loop.call_soon(again)
    for expected in range(1, 6):
        run_once(loop)
        assert count[0] == expected


def test_nested_call_soon_preserves_fifo_across_iterations(loop):
    order = []

    def make(name, depth):
        def cb():
            order.append((name, depth))
            if depth < 2:
                loop.call_soon(make(name, depth + 1))

        return cb

    loop.call_soon(make("x", 0))
    loop.call_soon(make("y", 0))
    for _ in range(3):
        run_once(loop)
    assert order == [("x", 0), ("y", 0), ("x", 1), ("y", 1), ("x", 2), ("y", 2)]


def test_many_callbacks_all_run(loop):
    n = 50_000
    count = [0]

    def inc():
        count[0] += 1

    for _ in range(n):
        loop.call_soon(inc)
    run_once(loop)
    assert count[0] == n


def test_callback_that_raises_does_not_stop_the_others(loop, expect_exception_handler):
    calls = []

    def bad():
        raise ValueError("bad")

    loop.call_soon(calls.append, 1)
    loop.call_soon(bad)
    loop.call_soon(calls.append, 2)
    run_once(loop)
    assert calls == [1, 2]
    assert len(expect_exception_handler) == 1


# -- argument checks -------------------------------------------------------------------------
#
# asyncio checks that callbacks are callable (and not coroutines) only in debug mode; the checks
# for debug mode are in test_debug_mode.py. Without debug mode, a loop may reject a bad callback
# at once with TypeError (stricter than asyncio), or accept it; then running it must report a
# TypeError through the exception handler and the loop must go on.


@pytest.mark.parametrize("bad", [1, None, "text", object()], ids=["int", "None", "str", "object"])
def test_call_soon_non_callable_is_type_error_now_or_when_run(loop, expect_exception_handler, bad):
    try:
        loop.call_soon(bad)
    except TypeError:
        return
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert len(expect_exception_handler) == 1
    assert isinstance(expect_exception_handler[0]["exception"], TypeError)


@pytest.mark.parametrize("method", ["call_later", "call_at"])
def test_timer_non_callable_is_type_error_now_or_when_run(loop, expect_exception_handler, method):
    try:
        if method == "call_later":
            loop.call_later(0, 1)
        else:
            loop.call_at(loop.time(), 1)
    except TypeError:
        return
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert len(expect_exception_handler) == 1
    assert isinstance(expect_exception_handler[0]["exception"], TypeError)


def test_call_soon_threadsafe_non_callable_is_type_error_now_or_when_run(
    loop, expect_exception_handler
):
    try:
        loop.call_soon_threadsafe(1)
    except TypeError:
        return
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert len(expect_exception_handler) == 1
    assert isinstance(expect_exception_handler[0]["exception"], TypeError)


def test_call_soon_without_callback_is_type_error(loop):
    with pytest.raises(TypeError):
        loop.call_soon()


def test_call_later_without_callback_is_type_error(loop):
    with pytest.raises(TypeError):
        loop.call_later(1)


def test_call_later_delay_none_is_type_error(loop):
    with pytest.raises(TypeError):
        loop.call_later(None, print)


@pytest.mark.parametrize(
    "delay", ["1", b"1", [1], object()], ids=["str", "bytes", "list", "object"]
)
def test_call_later_delay_of_wrong_type_is_type_error(loop, delay):
    with pytest.raises(TypeError):
        loop.call_later(delay, print)


def test_call_at_when_none_is_type_error(loop):
    with pytest.raises(TypeError):
        loop.call_at(None, print)


def test_call_later_accepts_int_and_float_and_bool_delays(loop):
    calls = []
    loop.call_later(0, calls.append, "int")
    loop.call_later(0.0, calls.append, "float")
    loop.call_later(False, calls.append, "bool")
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert sorted(calls) == ["bool", "float", "int"]
