# tests/python/test_executor.py: run_in_executor with the default and a custom executor,
# set_default_executor, shutdown_default_executor, and close() shutting the executor down.

import asyncio
import concurrent.futures
import threading
import time

import pytest


@pytest.fixture
def executor():
    ex = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="pyloop-test-exec")
    yield ex
    ex.shutdown(wait=True)


def test_run_in_executor_default_runs_in_another_thread(loop):
    async def main():
        return await loop.run_in_executor(None, lambda a, b: (a + b, threading.get_ident()), 2, 3)

    value, thread_id = loop.run_until_complete(main())
    assert value == 5
    assert thread_id != threading.get_ident()


def test_run_in_executor_returns_an_asyncio_future(loop):
    async def main():
        fut = loop.run_in_executor(None, time.sleep, 0)
        assert asyncio.isfuture(fut)
        assert fut.get_loop() is loop
        return await fut

    assert loop.run_until_complete(main()) is None


def test_run_in_executor_custom_executor(loop, executor):
    async def main():
        return await loop.run_in_executor(executor, lambda: threading.current_thread().name)

    assert loop.run_until_complete(main()).startswith("pyloop-test-exec")


def test_run_in_executor_propagates_exception(loop):
    def fail():
        raise ArithmeticError("in-thread")

    async def main():
        with pytest.raises(ArithmeticError, match="in-thread"):
            await loop.run_in_executor(None, fail)

    loop.run_until_complete(main())


def test_run_in_executor_many_jobs_in_parallel(loop):
    barrier = threading.Barrier(3, timeout=5)

    def job(i):
        barrier.wait()  # only passes if three jobs run at the same time
        return i

    async def main():
        return await asyncio.gather(*(loop.run_in_executor(None, job, i) for i in range(3)))

    assert loop.run_until_complete(main()) == [0, 1, 2]


def test_run_in_executor_wakes_a_loop_waiting_on_a_long_timer(loop):
    async def main():
        t0 = time.monotonic()
        await loop.run_in_executor(None, time.sleep, 0.02)
        return time.monotonic() - t0

    safety = loop.call_later(10, loop.stop)
    elapsed = loop.run_until_complete(main())
    safety.cancel()
    assert elapsed < 1.0


def test_set_default_executor_is_used(loop, executor):
    loop.set_default_executor(executor)

    async def main():
        return await loop.run_in_executor(None, lambda: threading.current_thread().name)

    assert loop.run_until_complete(main()).startswith("pyloop-test-exec")


@pytest.mark.parametrize("bad", [None, 1, object()], ids=["None", "int", "object"])
def test_set_default_executor_rejects_non_thread_pool(loop, bad):
    with pytest.raises(TypeError):
        loop.set_default_executor(bad)


def test_set_default_executor_rejects_process_pool(loop):
    # Creating a ProcessPoolExecutor starts no process until work is submitted.
    pool = concurrent.futures.ProcessPoolExecutor(1)
    try:
        with pytest.raises(TypeError):
            loop.set_default_executor(pool)
    finally:
        pool.shutdown(wait=True)


def test_shutdown_default_executor_waits_for_running_jobs(loop):
    finished = []

    def job():
        time.sleep(0.05)
        finished.append(True)

    async def main():
        loop.run_in_executor(None, job)
        await asyncio.sleep(0)
        await loop.shutdown_default_executor()
        return list(finished)

    assert loop.run_until_complete(main()) == [True]


def test_shutdown_default_executor_without_executor(loop):
    loop.run_until_complete(loop.shutdown_default_executor())


def test_run_in_executor_after_shutdown_is_runtime_error(loop, executor):
    async def main():
        await loop.run_in_executor(None, time.sleep, 0)
        await loop.shutdown_default_executor()
        with pytest.raises(RuntimeError):
            loop.run_in_executor(None, time.sleep, 0)
        # An explicit executor is still accepted.
        return await loop.run_in_executor(executor, lambda: "explicit")

    assert loop.run_until_complete(main()) == "explicit"


def test_run_in_executor_after_shutdown_without_prior_executor_is_runtime_error(loop):
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError):
        loop.run_in_executor(None, time.sleep, 0)


def test_shutdown_default_executor_shuts_a_custom_default_down(loop):
    ex = concurrent.futures.ThreadPoolExecutor(1)
    try:
        loop.set_default_executor(ex)
        loop.run_until_complete(loop.shutdown_default_executor())
        with pytest.raises(RuntimeError):
            ex.submit(time.sleep, 0)
    finally:
        ex.shutdown(wait=True)


def test_close_after_executor_use_returns_quickly(loop):
    loop.run_until_complete(loop.run_in_executor(None, time.sleep, 0))
    t0 = time.monotonic()
    loop.close()
    assert time.monotonic() - t0 < 0.5


def test_cancelling_the_asyncio_future_cancels_a_queued_job(loop):
    ex = concurrent.futures.ThreadPoolExecutor(1)
    release = threading.Event()
    ran = []

    async def main():
        blocker = loop.run_in_executor(ex, release.wait, 5)
        queued = loop.run_in_executor(ex, ran.append, "queued")
        await asyncio.sleep(0.01)
        queued.cancel()
        await asyncio.sleep(0)
        release.set()
        await blocker
        with pytest.raises(asyncio.CancelledError):
            await queued

    try:
        loop.run_until_complete(main())
    finally:
        release.set()
        ex.shutdown(wait=True)
    assert ran == []



def test_asyncio_to_thread(loop):
    async def main():
        return await asyncio.to_thread(lambda: threading.get_ident())

    assert loop.run_until_complete(main()) != threading.get_ident()
