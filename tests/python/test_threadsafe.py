# tests/python/test_threadsafe.py: call_soon_threadsafe and run_coroutine_threadsafe from other
# threads: wakeup of a blocked loop, ordering per thread, no lost or duplicated callbacks.

import asyncio
import queue
import sys
import threading
import time


def start_thread(target, *args):
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def test_call_soon_threadsafe_wakes_a_loop_blocked_on_a_long_timer(loop):
    safety = loop.call_later(5, loop.stop)  # the loop would block here without a wakeup
    calls = []

    def from_thread():
        time.sleep(0.05)
        loop.call_soon_threadsafe(lambda: (calls.append(threading.get_ident()), loop.stop()))

    t0 = time.monotonic()
    thread = start_thread(from_thread)
    loop.run_forever()
    elapsed = time.monotonic() - t0
    thread.join(2)
    safety.cancel()
    assert calls == [threading.get_ident()]  # ran on the loop's thread
    assert elapsed < 1.0


def test_call_soon_threadsafe_wakes_a_loop_waiting_for_a_future(loop):
    fut = loop.create_future()

    def from_thread():
        time.sleep(0.05)
        loop.call_soon_threadsafe(fut.set_result, "from-thread")

    safety = loop.call_later(5, fut.cancel)
    t0 = time.monotonic()
    thread = start_thread(from_thread)
    assert loop.run_until_complete(fut) == "from-thread"
    assert time.monotonic() - t0 < 1.0
    thread.join(2)
    safety.cancel()


def test_repeated_wakeups_each_take_effect(loop):
    # Several blocking waits in a row, each ended by another thread.
    safety = loop.call_later(5, loop.stop)
    for i in range(5):
        ready = threading.Event()

        def from_thread():
            ready.wait(2)
            time.sleep(0.01)
            loop.call_soon_threadsafe(loop.stop)

        thread = start_thread(from_thread)
        loop.call_soon(ready.set)
        t0 = time.monotonic()
        loop.run_forever()
        assert time.monotonic() - t0 < 1.0, f"wakeup {i} was late"
        thread.join(2)
    safety.cancel()


def test_call_soon_threadsafe_before_the_loop_runs(loop):
    calls = []
    thread = start_thread(lambda: loop.call_soon_threadsafe(calls.append, "x"))
    thread.join(2)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["x"]


def test_call_soon_threadsafe_from_the_loop_thread(loop):
    calls = []
    loop.call_soon_threadsafe(calls.append, 1)
    loop.call_soon(calls.append, 2)
    loop.call_soon_threadsafe(calls.append, 3)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == [1, 2, 3]


def test_call_soon_threadsafe_many_threads_no_loss_and_per_thread_fifo(loop):
    n_threads, per_thread = 8, 500
    seen = {i: [] for i in range(n_threads)}
    remaining = [n_threads * per_thread]
    barrier = threading.Barrier(n_threads)

    def record(tid, seq):
        seen[tid].append(seq)
        remaining[0] -= 1
        if remaining[0] == 0:
            loop.stop()

    def producer(tid):
        barrier.wait(2)
        for seq in range(per_thread):
            loop.call_soon_threadsafe(record, tid, seq)

    safety = loop.call_later(10, loop.stop)
    threads = [start_thread(producer, i) for i in range(n_threads)]
    loop.run_forever()
    for t in threads:
        t.join(2)
    safety.cancel()
    assert remaining[0] == 0
    for tid in range(n_threads):
        assert seen[tid] == list(range(per_thread))


def test_many_threadsafe_calls_while_not_running_do_not_block(loop):
    # Each call writes a wakeup; a full wakeup channel must not block or lose callbacks.
    n = 20_000
    count = [0]

    def inc():
        count[0] += 1

    done = threading.Event()

    def producer():
        for _ in range(n):
            loop.call_soon_threadsafe(inc)
        done.set()

    start_thread(producer)
    assert done.wait(10), "call_soon_threadsafe blocked while the loop was not running"
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert count[0] == n


def test_call_soon_threadsafe_on_closed_loop_from_thread_raises(loop):
    loop.close()
    errors = []

    def producer():
        try:
            loop.call_soon_threadsafe(print)
        except RuntimeError as exc:
            errors.append(exc)

    start_thread(producer).join(2)
    assert len(errors) == 1
    assert "Event loop is closed" in str(errors[0])


def test_call_soon_threadsafe_with_context(loop):
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")
    seen = []

    def producer():
        loop.call_soon_threadsafe(lambda: seen.append(var.get()), context=ctx)
        loop.call_soon_threadsafe(loop.stop)

    safety = loop.call_later(5, loop.stop)
    start_thread(producer)
    loop.run_forever()
    safety.cancel()
    assert seen == ["in-ctx"]


def test_run_coroutine_threadsafe_from_another_thread(loop):
    async def work(x):
        await asyncio.sleep(0.01)
        return x + 1

    results = []

    def producer():
        cf = asyncio.run_coroutine_threadsafe(work(41), loop)
        results.append(cf.result(timeout=5))
        loop.call_soon_threadsafe(loop.stop)

    safety = loop.call_later(5, loop.stop)
    thread = start_thread(producer)
    loop.run_forever()
    thread.join(2)
    safety.cancel()
    assert results == [42]


def test_run_coroutine_threadsafe_propagates_exception(loop):
    async def fail():
        raise LookupError("nope")

    errors = []

    def producer():
        cf = asyncio.run_coroutine_threadsafe(fail(), loop)
        try:
            cf.result(timeout=5)
        except LookupError as exc:
            errors.append(exc)
        loop.call_soon_threadsafe(loop.stop)

    safety = loop.call_later(5, loop.stop)
    thread = start_thread(producer)
    loop.run_forever()
    thread.join(2)
    safety.cancel()
    assert len(errors) == 1


def test_wrap_future_completed_by_a_thread(loop):
    import concurrent.futures

    cf = concurrent.futures.Future()

    def producer():
        time.sleep(0.02)
        cf.set_result("done")

    async def main():
        start_thread(producer)
        return await asyncio.wait_for(asyncio.wrap_future(cf), 5)

    assert loop.run_until_complete(main()) == "done"


def test_loops_in_separate_threads_run_independently(loop_factory):
    n_loops = 3
    results = {}
    errors = []
    all_running = threading.Barrier(n_loops, timeout=5)

    def worker(i):
        lp = loop_factory()
        try:

            async def main():
                await asyncio.sleep(0.01)
                all_running.wait()  # every loop is running at once, each in its own thread
                await asyncio.sleep(0.01)
                return (i, asyncio.get_running_loop() is lp, threading.get_ident())

            results[i] = lp.run_until_complete(main())
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            lp.close()

    threads = [start_thread(worker, i) for i in range(n_loops)]
    for t in threads:
        t.join(5)
    assert errors == []
    assert sorted(results) == list(range(n_loops))
    assert all(r[1] for r in results.values())
    assert len({r[2] for r in results.values()}) == n_loops


def test_a_python_thread_reaches_a_busy_loop_by_the_forced_switch(pyloop_module):
    # PyLoop only (decision 0030). A loop busy with callbacks keeps the GIL from turn to turn,
    # so a Python thread waiting for it gets it by the interpreter's forced switch, within
    # about one switch interval per acquisition. Releasing and retaking the GIL in each turn,
    # as asyncio's select(0) does, lets a waiting thread starve for hundreds of milliseconds
    # on a quiet machine; this test fails if the loop does that.
    loop = pyloop_module.new_event_loop()
    inbox = queue.SimpleQueue()

    def hand_back():
        while (item := inbox.get()) is not None:  # the GIL, once to return from get()
            fut, due = item
            time.sleep(max(0.0, due - time.monotonic()))
            loop.call_soon_threadsafe(fut.set_result, due)  # and once to call this

    async def main():
        stop = loop.create_future()

        async def busy():
            while not stop.done():
                end = time.perf_counter() + 100e-6
                while time.perf_counter() < end:
                    pass
                await asyncio.sleep(0)

        spinner = asyncio.ensure_future(busy())
        delays = []
        for _ in range(11):
            fut = loop.create_future()
            inbox.put((fut, time.monotonic() + 0.002))
            due = await fut
            delays.append(time.monotonic() - due)
        stop.set_result(None)
        await spinner
        return delays

    interval = sys.getswitchinterval()
    thread = start_thread(hand_back)
    try:
        delays = loop.run_until_complete(main())
    finally:
        inbox.put(None)
        thread.join(2)
        loop.close()
    # Two forced switches per hand-back; ten intervals of slack for a loaded machine.
    assert sorted(delays)[len(delays) // 2] < 10 * interval + 0.05, delays
