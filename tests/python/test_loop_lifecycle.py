# tests/python/test_loop_lifecycle.py: run_forever, run_until_complete, stop, close, is_running,
# is_closed and repr, as asyncio's BaseEventLoop defines them.

import asyncio
import gc
import sys
import threading
import time
import weakref

import pytest


def skip_asyncio_with_gh130145(loop_factory):
    """CPython 3.13.0-3.13.2: a run_forever() refused as 'already running' clears the running
    loop (python/cpython#130145). PyLoop must keep it; skip asyncio's loop where it is broken."""
    if loop_factory.name == "asyncio" and (3, 13, 0) <= sys.version_info[:3] < (3, 13, 3):
        pytest.skip("asyncio bug python/cpython#130145 on this Python version")


def test_new_loop_is_idle_and_open(loop):
    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert loop.is_running() is False
    assert loop.is_closed() is False


def test_run_until_complete_coroutine_returns_its_result(loop):
    async def main(x):
        await asyncio.sleep(0)
        return x * 2

    assert loop.run_until_complete(main(21)) == 42
    assert loop.is_running() is False


def test_run_until_complete_future_returns_its_result(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "done")
    assert loop.run_until_complete(fut) == "done"


def test_run_until_complete_raises_the_coroutine_exception(loop):
    class Boom(Exception):
        pass

    async def main():
        await asyncio.sleep(0)
        raise Boom("x")

    with pytest.raises(Boom, match="x"):
        loop.run_until_complete(main())


def test_run_until_complete_raises_the_future_exception(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_exception, KeyError("k"))
    with pytest.raises(KeyError):
        loop.run_until_complete(fut)


def test_run_until_complete_cancelled_future_raises_cancelled_error(loop):
    fut = loop.create_future()
    loop.call_soon(fut.cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(fut)


def test_run_until_complete_accepts_an_awaitable(loop):
    class Awaitable:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "awaited"

    assert loop.run_until_complete(Awaitable()) == "awaited"


def test_run_until_complete_rejects_non_awaitable(loop):
    with pytest.raises(TypeError):
        loop.run_until_complete(123)


def test_run_until_complete_already_done_future(loop):
    fut = loop.create_future()
    fut.set_result(7)
    assert loop.run_until_complete(fut) == 7


def test_run_until_complete_future_of_another_loop_is_value_error(loop, new_loop):
    other = new_loop()
    fut = other.create_future()
    with pytest.raises(ValueError):
        loop.run_until_complete(fut)
    assert loop.is_running() is False


def test_run_until_complete_returns_while_other_callbacks_keep_coming(loop):
    # The done callback stops the loop although a callback reschedules itself forever.
    ticks = []

    def tick():
        ticks.append(1)
        loop.call_soon(tick)

    loop.call_soon(tick)
    fut = loop.create_future()
    loop.call_later(0.02, fut.set_result, None)
    loop.run_until_complete(fut)
    assert len(ticks) > 1


def test_run_until_complete_stopped_early_raises_runtime_error(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed."):
        loop.run_until_complete(fut)
    assert not fut.done()
    assert loop.is_running() is False


def test_run_until_complete_stopped_early_with_coroutine_logs_nothing(loop):
    # The wrapping task stays pending; the loop marks it so that destroying it logs nothing
    # (the `loop` fixture fails the test if the exception handler is called).
    started = []

    async def main():
        started.append(1)
        await asyncio.sleep(10)

    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed."):
        loop.run_until_complete(main())
    assert started == [1]
    gc.collect()


def test_run_until_complete_removes_its_stop_callback(loop):
    # After run_until_complete ended early, completing the future must not stop a later run.
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError):
        loop.run_until_complete(fut)

    events = []
    loop.call_soon(fut.set_result, None)
    loop.call_later(0.05, lambda: (events.append("timer"), loop.stop()))
    t0 = time.monotonic()
    loop.run_forever()
    assert events == ["timer"]
    assert time.monotonic() - t0 >= 0.04


def test_run_until_complete_while_running_is_runtime_error(loop):
    errors = []

    async def inner():
        return 1

    async def main():
        coro = inner()
        try:
            loop.run_until_complete(coro)
        except RuntimeError as exc:
            errors.append(exc)
        finally:
            coro.close()

    loop.run_until_complete(main())
    assert len(errors) == 1
    assert "already running" in str(errors[0])


def test_run_forever_while_running_is_runtime_error(loop, loop_factory):
    skip_asyncio_with_gh130145(loop_factory)
    errors = []
    state_after = []

    def cb():
        try:
            loop.run_forever()
        except RuntimeError as exc:
            errors.append(exc)
        # The refused call must leave the running loop as it was.
        state_after.append((loop.is_running(), asyncio._get_running_loop()))
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert len(errors) == 1
    assert "already running" in str(errors[0])
    assert state_after == [(True, loop)]


def test_running_another_loop_of_same_kind_inside_is_runtime_error(loop, new_loop, loop_factory):
    skip_asyncio_with_gh130145(loop_factory)
    other = new_loop()
    errors = []

    async def main():
        with pytest.raises(RuntimeError) as info:
            other.run_forever()
        errors.append(info.value)
        assert asyncio.get_running_loop() is loop
        assert other.is_running() is False
        fut = other.create_future()
        with pytest.raises(RuntimeError):
            other.run_until_complete(fut)
        assert asyncio.get_running_loop() is loop

    loop.run_until_complete(main())
    assert "another loop is running" in str(errors[0])
    assert other.is_running() is False
    # Both loops remain usable afterwards.
    assert other.run_until_complete(asyncio.sleep(0, "ok")) == "ok"


def test_running_asyncio_loop_inside_this_loop_is_runtime_error(loop):
    other = asyncio.new_event_loop()
    try:

        async def main():
            fut = other.create_future()
            with pytest.raises(RuntimeError):
                other.run_until_complete(fut)
            assert asyncio.get_running_loop() is loop

        loop.run_until_complete(main())
    finally:
        other.close()


def test_running_this_loop_inside_an_asyncio_loop_is_runtime_error(loop, loop_factory):
    skip_asyncio_with_gh130145(loop_factory)
    outer = asyncio.new_event_loop()
    try:

        async def main():
            with pytest.raises(RuntimeError):
                loop.run_forever()
            assert asyncio.get_running_loop() is outer
            fut = loop.create_future()
            with pytest.raises(RuntimeError):
                loop.run_until_complete(fut)
            assert asyncio.get_running_loop() is outer

        outer.run_until_complete(main())
    finally:
        outer.close()
    assert loop.run_until_complete(asyncio.sleep(0, 5)) == 5


def test_running_loop_is_visible_to_asyncio_while_running(loop):
    seen = []

    def cb():
        seen.append(asyncio.get_running_loop())
        seen.append(asyncio._get_running_loop())
        loop.stop()

    loop.call_soon(cb)
    assert asyncio._get_running_loop() is None
    loop.run_forever()
    assert seen == [loop, loop]
    assert asyncio._get_running_loop() is None


def test_get_event_loop_inside_coroutine_returns_running_loop(loop):
    async def main():
        return asyncio.get_event_loop()

    assert loop.run_until_complete(main()) is loop


def test_is_running_inside_callbacks(loop):
    states = []
    loop.call_soon(lambda: states.append(loop.is_running()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert states == [True]
    assert loop.is_running() is False


def test_run_forever_returns_none(loop):
    loop.call_soon(loop.stop)
    assert loop.run_forever() is None


def test_stop_before_run_forever_runs_one_iteration(loop):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(second)  # scheduled during the iteration: runs in the next one

    def second():
        calls.append("second")

    loop.call_soon(first)
    loop.stop()
    loop.run_forever()
    assert calls == ["first"]

    # The stop request was consumed; the next run picks up the pending callback.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["first", "second"]


def test_stop_before_run_forever_with_nothing_scheduled_returns(loop):
    loop.stop()
    t0 = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - t0 < 1.0


def test_stop_finishes_the_current_iteration(loop):
    calls = []

    def stopper():
        calls.append("stop")
        loop.stop()
        loop.call_soon(calls.append, "next-iteration")

    loop.call_soon(stopper)
    loop.call_soon(calls.append, "same-iteration")
    loop.run_forever()
    assert calls == ["stop", "same-iteration"]

    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["stop", "same-iteration", "next-iteration"]


def test_stop_twice_is_same_as_once(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.stop()
    loop.stop()
    loop.run_forever()
    assert calls == [1]
    loop.call_soon(calls.append, 2)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == [1, 2]


def test_loop_can_run_many_times(loop):
    for i in range(5):
        assert loop.run_until_complete(asyncio.sleep(0, i)) == i
        loop.call_soon(loop.stop)
        loop.run_forever()


def test_close_is_idempotent(loop):
    loop.close()
    assert loop.is_closed() is True
    loop.close()
    assert loop.is_closed() is True


def test_close_while_running_is_runtime_error(loop):
    errors = []

    def cb():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(exc)
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert len(errors) == 1
    assert loop.is_closed() is False


def test_close_releases_pending_callbacks_and_timers(loop):
    class Arg:
        pass

    def cb(arg):
        pass

    a, b = Arg(), Arg()
    refs = [weakref.ref(a), weakref.ref(b)]
    loop.call_soon(cb, a)
    loop.call_later(60, cb, b)
    del a, b
    gc.collect()
    assert all(r() is not None for r in refs)
    loop.close()
    gc.collect()
    assert all(r() is None for r in refs)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda lp: lp.run_forever(), id="run_forever"),
        pytest.param(lambda lp: lp.call_soon(print), id="call_soon"),
        pytest.param(lambda lp: lp.call_soon_threadsafe(print), id="call_soon_threadsafe"),
        pytest.param(lambda lp: lp.call_later(1, print), id="call_later"),
        pytest.param(lambda lp: lp.call_at(lp.time() + 1, print), id="call_at"),
        pytest.param(lambda lp: lp.run_in_executor(None, print), id="run_in_executor"),
    ],
)
def test_calls_on_a_closed_loop_raise_event_loop_is_closed(loop, call):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        call(loop)


def test_run_until_complete_on_closed_loop_raises(loop):
    loop.close()
    fut = asyncio.Future(loop=loop)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_until_complete(fut)


def test_create_task_on_closed_loop_raises(loop):
    async def coro():
        pass

    loop.close()
    c = coro()
    try:
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            loop.create_task(c)
    finally:
        c.close()


def test_close_does_not_wait_for_default_executor(loop):
    release = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        release.wait(5)

    fut = loop.run_in_executor(None, blocker)
    assert started.wait(2)
    t0 = time.monotonic()
    loop.close()
    try:
        assert time.monotonic() - t0 < 0.5
    finally:
        release.set()
    del fut


def test_close_shuts_down_the_default_executor(loop):
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(1)
    try:
        loop.set_default_executor(executor)
        loop.close()
        with pytest.raises(RuntimeError):
            executor.submit(print)
    finally:
        executor.shutdown(wait=True)


def test_repr_shows_state(loop):
    def check():
        text = repr(loop)
        assert f"running={loop.is_running()}" in text
        assert f"closed={loop.is_closed()}" in text
        assert f"debug={loop.get_debug()}" in text
        return text

    assert "running=False" in check()
    reprs = []
    loop.call_soon(lambda: (reprs.append(check()), loop.stop()))
    loop.run_forever()
    assert "running=True" in reprs[0]
    loop.set_debug(True)
    assert "debug=True" in check()
    loop.set_debug(False)
    loop.close()
    assert "closed=True" in check()


def test_loop_is_weakly_referenceable_and_hashable(loop):
    # Libraries key per-loop state on the loop: weakref.WeakKeyDictionary[loop].
    ref = weakref.ref(loop)
    assert ref() is loop
    per_loop = weakref.WeakKeyDictionary()
    per_loop[loop] = "state"
    assert per_loop[loop] == "state"
    assert {loop: 1}[loop] == 1


def test_unclosed_loop_warns_when_destroyed(loop_factory):
    lp = loop_factory()
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del lp
        gc.collect()


def test_asyncio_runner_with_loop_factory(loop_factory):
    async def main(x):
        await asyncio.sleep(0)
        return x, asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        first, lp = runner.run(main(1))
        second, lp2 = runner.run(main(2))
        assert runner.get_loop() is lp is lp2
    assert (first, second) == (1, 2)
    assert lp.is_closed()
