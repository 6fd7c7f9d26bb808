"""tests/python/test_native_bridge_coroutines.py — C++20 coroutines on a PyLoop: Asio timers and
sockets on the loop's thread, Python awaitables awaited from C++, exceptions and cancellation
crossing both ways."""

import asyncio
import os
import time

import pytest

from native_helpers import close_loop, ex, make_pyloop, open_fds, ploop  # noqa: F401 (fixtures)

pytestmark = pytest.mark.pyloop


def test_timer_and_loopback_round_trip(ex, ploop):
    payload = bytes(range(256)) * 2048  # 512 KiB: several reads and writes each way

    async def main():
        started = time.monotonic()
        # Python callbacks keep running on the same thread while the C++ coroutine waits.
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        t = asyncio.ensure_future(ticker())
        echoed = await ex.echo_coroutine(ploop, 0.05, payload)
        t.cancel()
        return echoed, time.monotonic() - started, ticks

    echoed, elapsed, ticks = ploop.run_until_complete(main())
    assert echoed == payload
    assert elapsed >= 0.05
    assert ticks >= 3
    # Once the loop's Asio reactor exists, each round trip closes every socket it opened.
    fds = open_fds()
    for _ in range(3):
        assert ploop.run_until_complete(main())[0] == payload
    assert open_fds() == fds


def test_coroutine_without_result_gives_none(ex, ploop):
    async def main():
        fut = ex.yield_coroutine(ploop)
        assert isinstance(fut, asyncio.Future) and not fut.done()
        return await fut

    assert ploop.run_until_complete(main()) is None


def test_cpp_awaits_a_python_coroutine_task_and_future(ex, ploop):
    async def double(x):
        await asyncio.sleep(0.01)
        return x * 2

    async def main():
        from_coro = await ex.await_coroutine(ploop, double(21))
        from_task = await ex.await_coroutine(ploop, asyncio.ensure_future(double(5)))
        fut = ploop.create_future()
        ploop.call_later(0.01, fut.set_result, "later")
        from_future = await ex.await_coroutine(ploop, fut)
        return from_coro, from_task, from_future

    assert ploop.run_until_complete(main()) == (("from C++", 42), ("from C++", 10), ("from C++", "later"))


def test_python_exception_crosses_cpp_unchanged(ex, ploop):
    error = KeyError("original")

    async def fails():
        await asyncio.sleep(0)
        raise error

    async def main():
        with pytest.raises(KeyError) as info:
            await ex.await_coroutine(ploop, fails())
        assert info.value is error  # the same object, not a copy
        # C++ can catch it: it sees a python_error carrying the exception.
        return await ex.catch_coroutine(ploop, fails())

    assert ploop.run_until_complete(main()) == "KeyError"


def test_not_awaitable_is_a_type_error_in_cpp(ex, ploop):
    async def main():
        with pytest.raises(TypeError):
            await ex.await_coroutine(ploop, 42)

    ploop.run_until_complete(main())


def test_python_cancel_reaches_the_asio_operation(ex, ploop):
    async def main():
        before = ex.native_cancellations()
        task = asyncio.ensure_future(ex.sleep_coroutine(ploop, 30))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The coroutine sees operation_aborted on the loop's next Asio turn.
        for _ in range(100):
            if ex.native_cancellations() > before:
                break
            await asyncio.sleep(0.001)
        return ex.native_cancellations() - before

    started = time.monotonic()
    assert ploop.run_until_complete(main()) == 1
    assert time.monotonic() - started < 5


def test_python_cancel_reaches_the_awaited_python_task(ex, ploop):
    inner_cancelled = asyncio.Event()

    async def inner():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            inner_cancelled.set()
            raise

    async def main():
        before = ex.native_cancellations()
        outer = asyncio.ensure_future(ex.watch_coroutine(ploop, inner()))
        await asyncio.sleep(0.02)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        await asyncio.wait_for(inner_cancelled.wait(), 5)
        for _ in range(100):
            if ex.native_cancellations() > before:
                break
            await asyncio.sleep(0.001)
        return ex.native_cancellations() - before

    assert ploop.run_until_complete(main()) == 1


def test_python_side_cancellation_cancels_the_cpp_future(ex, ploop):
    # The awaited Python task is cancelled by someone else: C++ sees CancelledError and, not
    # catching it, lets it cancel the future Python awaits.
    async def sleeper():
        await asyncio.sleep(30)

    async def main():
        inner = asyncio.ensure_future(sleeper())
        outer = ex.await_coroutine(ploop, inner)
        await asyncio.sleep(0.01)
        inner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        return outer.cancelled()

    assert ploop.run_until_complete(main())


def test_wait_for_timeout_cancels_native_work(ex, ploop):
    async def main():
        before = ex.native_cancellations()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ex.sleep_coroutine(ploop, 30), 0.02)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ex.wait_for_cancel(ploop), 0.02)
        for _ in range(500):
            if ex.native_cancellations() - before == 2:
                break
            await asyncio.sleep(0.002)
        return ex.native_cancellations() - before

    assert ploop.run_until_complete(main()) == 2


def test_many_coroutines_share_the_loop(ex, ploop):
    async def value(i):
        await asyncio.sleep(0)
        return i

    async def main():
        return await asyncio.gather(
            *(ex.await_coroutine(ploop, value(i)) for i in range(200)),
            *(ex.sleep_coroutine(ploop, 0.001 * (i % 5)) for i in range(200)),
        )

    results = ploop.run_until_complete(main())
    assert results[:200] == [("from C++", i) for i in range(200)]


def eventpoll_fds():
    """epoll instances open in this process (Linux)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
        except OSError:
            pass
    return count


def test_extension_and_loop_share_one_asio_reactor(ex):
    # The extension compiles Asio inline, PyLoop separately; their services are found by type
    # name, so the extension's sockets and timers register with the reactor the loop waits in:
    # a loop that ran both has two epoll instances (its readiness set, Asio's reactor), never a
    # third for the extension.
    before = eventpoll_fds()
    lp = make_pyloop()
    try:
        assert lp.run_until_complete(ex.echo_coroutine(lp, 0.01, b"x" * 100000)) == b"x" * 100000
        assert lp.run_until_complete(ex.sleep_coroutine(lp, 0.01)) == 0.01
        assert eventpoll_fds() - before == 2
    finally:
        close_loop(lp)
    assert eventpoll_fds() == before
