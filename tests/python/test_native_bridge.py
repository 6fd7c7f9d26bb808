"""tests/python/test_native_bridge.py — the native bridge's public API through the example
extension: the loop's Asio executor, native futures completed from other threads with every
kind of value, work on the native pool, zero-copy buffers both ways."""

import asyncio
import gc
import hashlib
import weakref

import pytest

from native_helpers import ex, make_pyloop, ploop  # noqa: F401 (ex, ploop: fixtures)

pytestmark = pytest.mark.pyloop


def test_headers_are_installed_with_the_package():
    import data_bridge.pyloop as pyloop
    import os

    include = pyloop.get_include()
    for header in ("pyloop.hpp", "c_api.h", "api.hpp", "future.hpp", "coroutine.hpp"):
        assert os.path.isfile(os.path.join(include, "data_bridge", "pyloop", header)), header
    assert type(pyloop._pyloop._C_API).__name__ == "PyCapsule"


def test_executor_of_the_loop_runs_handlers_on_its_thread(ex, loop):
    # The same call on both loops: PyLoop runs it, asyncio's loop is refused with TypeError
    # (what an extension gets for any object that is not a PyLoop).
    async def main():
        return await ex.count_on_loop(loop, 100)

    if ex.is_pyloop(loop):
        assert loop.run_until_complete(main()) == 100
    else:
        with pytest.raises(TypeError, match="expected a data_bridge.pyloop PyLoop"):
            loop.run_until_complete(main())


@pytest.mark.parametrize("bad", [None, 1, "loop", object()])
def test_anything_but_a_pyloop_is_a_type_error(ex, bad):
    with pytest.raises(TypeError):
        ex.count_on_loop(bad, 1)
    with pytest.raises(TypeError):
        ex.complete_from_thread(bad, "int")
    with pytest.raises(TypeError):
        ex.hash_on_pool(bad, b"x")


def test_closed_loop_is_refused_clearly(ex):
    lp = make_pyloop()
    lp.close()
    for call in (lambda: ex.count_on_loop(lp, 1), lambda: ex.pool_ping(lp),
                 lambda: ex.sleep_coroutine(lp, 0.1), lambda: ex.make_pending(lp)):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            call()


VALUES = {
    "int": -42,
    "uint": 2**64 - 1,
    "float": 2.5,
    "bool": True,
    "none": None,
    "str": "h\u00e9llo",
    "bytes": b"a\x00b",
    "tuple": (1, "two", [3.0]),
    "object": {"answer": 42},
}


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_value_completed_from_another_thread(ex, ploop, kind):
    async def main():
        return await ex.complete_from_thread(ploop, kind)

    result = ploop.run_until_complete(main())
    assert result == VALUES[kind]
    assert type(result) is type(VALUES[kind])


def test_native_buffer_value_is_not_copied(ex, ploop):
    async def main():
        return await ex.complete_from_thread(ploop, "buffer")

    buf = ploop.run_until_complete(main())
    view = memoryview(buf)
    assert view.nbytes == len(buf) == 1 << 20
    assert view[0] == ord("x") and view[-1] == ord("x")
    assert type(buf).__name__ == "NativeBuffer"


@pytest.mark.parametrize(
    "kind, exc_type, message",
    [
        ("runtime_error", RuntimeError, "native failure"),
        ("python_error", ValueError, "raised in native code"),
        ("broken", RuntimeError, "native promise destroyed without a result"),
    ],
)
def test_exception_completed_from_another_thread(ex, ploop, kind, exc_type, message):
    async def main():
        return await ex.complete_from_thread(ploop, kind)

    with pytest.raises(exc_type, match=message):
        ploop.run_until_complete(main())


def test_cancel_from_native_side_cancels_the_future(ex, ploop):
    async def main():
        fut = ex.complete_from_thread(ploop, "cancel")
        with pytest.raises(asyncio.CancelledError):
            await fut
        return fut.cancelled()

    assert ploop.run_until_complete(main())


def test_native_future_is_an_asyncio_future(ex, ploop):
    async def main():
        fut = ex.complete_from_thread(ploop, "int")
        assert isinstance(fut, asyncio.Future) and fut.get_loop() is ploop
        seen = []
        fut.add_done_callback(lambda f: seen.append(f.result()))
        results = await asyncio.gather(fut, ex.complete_from_thread(ploop, "str"))
        await asyncio.sleep(0)
        return results, seen

    assert ploop.run_until_complete(main()) == ([-42, "h\u00e9llo"], [-42])


def test_pool_work_result_and_size(ex, ploop):
    data = bytes(range(256)) * 4096

    async def main():
        return await asyncio.gather(*(ex.hash_on_pool(ploop, data) for _ in range(8)))

    results = ploop.run_until_complete(main())
    assert results == [ex.hash_sync(data)] * 8
    assert ex.pool_size() >= 2


def test_many_pool_completions_in_flight_all_arrive(ex, ploop):
    # A burst far larger than the pool: each post past the first wakes no thread, the workers
    # wake each other; every completion must still reach its future.
    async def main():
        for _ in range(5):
            await asyncio.gather(*(ex.pool_ping(ploop) for _ in range(2000)))
        return await asyncio.gather(*(ex.sleep_on_pool(ploop, 0.001) for _ in range(3 * ex.pool_size())))

    assert ploop.run_until_complete(main()) == [0.001] * (3 * ex.pool_size())


def test_kernel_wake_floor_measures_a_wake_up(ex):
    # The bridge benchmark's floor row: a median of real wake-ups, above zero and far below
    # the sleep between them.
    floor = ex.kernel_wake_floor(20, 0.0005)
    assert 0 < floor < 500
    with pytest.raises(ValueError, match="n must be positive"):
        ex.kernel_wake_floor(0, 0.0005)


@pytest.mark.parametrize(
    "kind, exc_type, message",
    [
        ("runtime", RuntimeError, "failed on the pool"),
        ("bad_alloc", MemoryError, None),
        ("python", ValueError, "Python error from the pool"),
        ("other", RuntimeError, "unknown C\\+\\+ exception"),
    ],
)
def test_exception_thrown_by_pool_work(ex, ploop, kind, exc_type, message):
    async def main():
        await ex.fail_on_pool(ploop, kind)

    with pytest.raises(exc_type, match=message):
        ploop.run_until_complete(main())


def test_python_buffers_are_read_in_place_on_the_pool(ex, ploop):
    # A bytearray exported to a pool job cannot be resized until the job lets go of it: the
    # native code reads the object's own memory, not a copy.
    data = bytearray(b"\x01" * (8 << 20))
    expected = ex.hash_sync(data)

    async def main():
        fut = ex.hash_on_pool(ploop, data)
        resized = None
        try:
            data.extend(b"x")
        except BufferError:
            resized = False
        result = await fut
        data.extend(b"x")  # released with the job
        return result, resized

    result, resized = ploop.run_until_complete(main())
    assert result == expected
    assert resized in (False, None)  # None: the job was already done (a fast pool)
    for source in (memoryview(b"abc" * 1000), bytearray(b"abc" * 1000), b"abc" * 1000):
        assert ploop.run_until_complete(ex.hash_on_pool(ploop, source)) == ex.hash_sync(b"abc" * 1000)
    with pytest.raises(TypeError):
        ex.hash_on_pool(ploop, "not a buffer")


def test_native_buffer_lives_as_long_as_its_views(ex):
    before = ex.live_buffers()
    buf = ex.make_buffer(1 << 16, 7)
    view = memoryview(buf)
    assert ex.live_buffers() == before + 1
    assert not view.readonly and view.nbytes == 1 << 16
    view[0] = 9  # writes the native memory itself
    assert memoryview(buf)[0] == 9 and memoryview(buf)[1] == 7
    assert hashlib.sha256(buf).digest() == hashlib.sha256(bytes(view)).digest()
    ref = weakref.ref(buf) if hasattr(buf, "__weakref__") else None
    del buf
    gc.collect()
    assert ex.live_buffers() == before + 1  # the memoryview keeps the owner
    view.release()
    del view
    gc.collect()
    assert ex.live_buffers() == before
    assert ref is None or ref() is None
