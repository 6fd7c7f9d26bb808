"""tests/python/test_native_bridge_faults.py — the native bridge's faults: a native future whose loop
has closed, a loop closed while pool work or a C++ coroutine is in flight, the awaiting task
cancelled mid-flight, an extension built against another API; no crash and no leak (objects
counted with weakrefs and gc, memory with tracemalloc, descriptors in /proc)."""

import asyncio
import gc
import time
import tracemalloc
import weakref

import pytest

from native_helpers import close_loop, ex, make_pyloop, open_fds  # noqa: F401 (ex: a fixture)

pytestmark = pytest.mark.pyloop


def test_completing_after_the_loop_closed_is_safe(ex):
    lp = make_pyloop()
    fut, promise = lp.run_until_complete(_make_pending(ex, lp))
    lp.close()
    # The completion is refused (the loop is gone) and freed on the completing thread.
    assert promise.set_value_from_thread(7) is False
    assert not fut.done()
    # Awaiting it needs its loop: asyncio's own error says why.
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        lp.run_until_complete(fut)
    ref = weakref.ref(fut)
    del fut, promise
    close_loop(lp)
    assert ref() is None


async def _make_pending(ex, lp):
    return ex.make_pending(lp)


def test_completion_queued_when_the_loop_closes_is_freed(ex):
    lp = make_pyloop()
    fut, promise = lp.run_until_complete(_make_pending(ex, lp))
    assert promise.set_value_from_thread(1) is True  # queued, never run: the loop closes
    lp.close()
    assert not fut.done()
    ref = weakref.ref(fut)
    del fut, promise
    close_loop(lp)
    assert ref() is None


def test_dropped_promise_fails_the_future(ex):
    lp = make_pyloop()
    try:
        fut, promise = lp.run_until_complete(_make_pending(ex, lp))
        promise.drop()
        with pytest.raises(RuntimeError, match="without a result"):
            lp.run_until_complete(fut)
    finally:
        close_loop(lp)


def test_promise_sees_the_python_cancellation(ex):
    lp = make_pyloop()
    try:
        fut, promise = lp.run_until_complete(_make_pending(ex, lp))
        assert not promise.cancelled
        before = ex.native_cancellations()
        assert fut.cancel("stop") is True
        # At once, on the loop's thread: the flag, then the on_cancel callback, once.
        assert promise.cancelled
        assert ex.native_cancellations() == before + 1
        assert fut.cancel() is False
        assert ex.native_cancellations() == before + 1
        assert promise.set_value_from_thread(3) is True  # accepted, then dropped: no effect
        lp.run_until_complete(asyncio.sleep(0.01))
        assert fut.cancelled()
    finally:
        close_loop(lp)


def test_loop_closed_while_pool_work_is_in_flight(ex):
    fds = open_fds()
    for _ in range(5):
        lp = make_pyloop()
        futures = [ex.sleep_on_pool(lp, 0.05) for _ in range(4)]
        lp.run_until_complete(asyncio.sleep(0.01))
        lp.close()
        refs = [weakref.ref(f) for f in futures]
        del futures
        close_loop(lp)
        del lp
        gc.collect()
        assert all(r() is None for r in refs)
    time.sleep(0.2)  # the jobs finish against closed loops
    gc.collect()
    assert open_fds() <= fds


def test_loop_closed_while_a_coroutine_is_suspended(ex):
    before = ex.live_buffers()
    for _ in range(5):
        lp = make_pyloop()
        fut = ex.sleep_coroutine(lp, 30)
        started = asyncio.ensure_future(asyncio.sleep(0.01), loop=lp)
        lp.run_until_complete(started)
        # Closing destroys the coroutine's frame (its timer, its promise) with the loop's Asio
        # context; the future stays pending, as an executor's would.
        lp.close()
        assert not fut.done()
        ref = weakref.ref(fut)
        del fut
        close_loop(lp)
        assert ref() is None
    assert ex.live_buffers() == before


def test_loop_closed_while_cpp_awaits_python(ex):
    lp = make_pyloop()

    async def forever():
        await asyncio.sleep(30)

    async def main():
        fut = ex.await_coroutine(lp, forever())
        await asyncio.sleep(0.01)
        return fut

    fut = lp.run_until_complete(main())
    lp.close()
    ref = weakref.ref(fut)
    del fut
    close_loop(lp)
    assert ref() is None


def test_cancel_mid_flight_many_times_leaks_nothing(ex):
    lp = make_pyloop()

    async def once():
        t1 = asyncio.ensure_future(ex.sleep_coroutine(lp, 10))
        t2 = asyncio.ensure_future(ex.wait_for_cancel(lp))
        t3 = asyncio.ensure_future(ex.watch_coroutine(lp, asyncio.sleep(10)))
        await asyncio.sleep(0)
        for t in (t1, t2, t3):
            t.cancel()
        await asyncio.gather(t1, t2, t3, return_exceptions=True)

    async def cycle(n):
        for _ in range(n):
            await once()

    try:
        lp.run_until_complete(cycle(50))  # warm up: caches, free lists, the reactor
        gc.collect()
        objects = len(gc.get_objects())
        tracemalloc.start()
        snapshot = tracemalloc.take_snapshot()
        lp.run_until_complete(cycle(300))
        gc.collect()
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snapshot, "filename"))
        tracemalloc.stop()
        assert len(gc.get_objects()) - objects < 100
        assert grown < 256 * 1024, grown
    finally:
        close_loop(lp)


def test_completions_and_errors_many_times_leak_nothing(ex):
    lp = make_pyloop()
    kinds = ["int", "str", "bytes", "object", "tuple", "buffer", "runtime_error", "python_error",
             "cancel", "broken"]

    async def cycle(n):
        for _ in range(n):
            await asyncio.gather(*(ex.complete_from_thread(lp, k) for k in kinds),
                                 ex.fail_on_pool(lp, "python"), ex.fail_on_pool(lp, "runtime"),
                                 ex.hash_on_pool(lp, bytearray(1000)),
                                 return_exceptions=True)

    try:
        lp.run_until_complete(cycle(20))
        gc.collect()
        objects = len(gc.get_objects())
        tracemalloc.start()
        snapshot = tracemalloc.take_snapshot()
        lp.run_until_complete(cycle(200))
        gc.collect()
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snapshot, "filename"))
        tracemalloc.stop()
        assert len(gc.get_objects()) - objects < 100
        assert grown < 256 * 1024, grown
    finally:
        close_loop(lp)


@pytest.mark.parametrize(
    "field, message",
    [
        ("api", "native bridge API version"),
        ("asio", "built with Asio"),
        ("config", "different Asio configurations"),
    ],
)
def test_mismatched_extension_is_refused_at_import(ex, field, message):
    with pytest.raises(ImportError, match=message):
        ex.check_mismatch(field)
