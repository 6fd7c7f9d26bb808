# tests/python/test_futures_tasks.py: create_future, create_task, the task factory, and the
# asyncio primitives built on them (gather, wait_for, timeout, TaskGroup, sleep, cancellation).

import asyncio
import contextvars
import gc
import sys

import pytest


# -- create_future / create_task ---------------------------------------------------------------


def test_create_future_is_a_pending_future_of_this_loop(loop):
    fut = loop.create_future()
    assert asyncio.isfuture(fut)
    assert fut.get_loop() is loop
    assert not fut.done()
    fut.cancel()


def test_future_callbacks_run_through_the_loop_in_order(loop):
    calls = []
    fut = loop.create_future()
    fut.add_done_callback(lambda f: calls.append(("a", f.result())))
    fut.add_done_callback(lambda f: calls.append(("b", f.result())))
    fut.set_result(5)
    assert calls == []  # callbacks are scheduled, not called inline
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == [("a", 5), ("b", 5)]


def test_create_task_returns_a_task_of_this_loop(loop):
    async def coro():
        return "r"

    async def main():
        task = loop.create_task(coro())
        assert isinstance(task, asyncio.Task)
        assert task.get_loop() is loop
        return await task

    assert loop.run_until_complete(main()) == "r"


def test_create_task_outside_a_running_loop(loop):
    async def coro():
        await asyncio.sleep(0)
        return 3

    task = loop.create_task(coro())
    assert not task.done()
    assert loop.run_until_complete(task) == 3


def test_create_task_name(loop):
    async def coro():
        return asyncio.current_task().get_name()

    task = loop.create_task(coro(), name="my-task")
    assert task.get_name() == "my-task"
    assert loop.run_until_complete(task) == "my-task"
    unnamed = loop.create_task(coro())
    assert unnamed.get_name().startswith("Task-")
    loop.run_until_complete(unnamed)


def test_create_task_context(loop):
    var = contextvars.ContextVar("v", default=None)
    ctx = contextvars.copy_context()
    ctx.run(var.set, "ctx")

    async def coro():
        return var.get()

    assert loop.run_until_complete(loop.create_task(coro(), context=ctx)) == "ctx"


def test_create_task_rejects_non_coroutine(loop):
    with pytest.raises(TypeError):
        loop.create_task(lambda: None)
    with pytest.raises(TypeError):
        loop.create_task(None)


def test_task_steps_and_callbacks_share_one_fifo(loop):
    # A new task schedules its first step with call_soon; a completed future schedules its
    # callbacks when the result is set. Both queue behind what is already there.
    order = []

    async def coro():
        order.append("task-step")

    loop.call_soon(order.append, "before-task")
    loop.create_task(coro())
    loop.call_soon(order.append, "after-task")
    fut = loop.create_future()
    loop.call_soon(order.append, "before-result")
    fut.add_done_callback(lambda f: order.append("done-callback"))
    fut.set_result(None)
    loop.call_soon(order.append, "after-result")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order == [
        "before-task", "task-step", "after-task", "before-result", "done-callback",
        "after-result",
    ]


def test_future_result_wakes_the_awaiting_task_before_later_callbacks(loop):
    order = []

    async def waiter(fut):
        order.append("waiting")
        await fut
        order.append("resumed")

    async def main():
        fut = loop.create_future()
        task = loop.create_task(waiter(fut))
        await asyncio.sleep(0)
        fut.set_result(None)
        loop.call_soon(order.append, "queued-after-set_result")
        await task

    loop.run_until_complete(main())
    assert order == ["waiting", "resumed", "queued-after-set_result"]


# -- task factory ------------------------------------------------------------------------------


def test_task_factory_default_is_none(loop):
    assert loop.get_task_factory() is None


def test_set_task_factory_is_used_by_create_task_and_asyncio(loop):
    created = []

    def factory(lp, coro, **kwargs):
        task = asyncio.Task(coro, loop=lp, **kwargs)
        created.append((lp, task))
        return task

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def child():
        return 1

    async def main():
        t1 = loop.create_task(child())
        t2 = asyncio.create_task(child())
        res = await asyncio.gather(t1, t2, child())
        return t1, t2, res

    t1, t2, res = loop.run_until_complete(main())
    assert res == [1, 1, 1]
    tasks = [t for _, t in created]
    assert t1 in tasks and t2 in tasks
    assert all(lp is loop for lp, _ in created)
    assert len(created) == 4  # main, t1, t2 and the one gather wrapped


def test_task_factory_receives_context_keyword(loop):
    received = []
    ctx = contextvars.copy_context()

    def factory(lp, coro, **kwargs):
        received.append(kwargs)
        return asyncio.Task(coro, loop=lp, **kwargs)

    loop.set_task_factory(factory)

    async def coro():
        return "ok"

    task = loop.create_task(coro(), context=ctx)
    assert loop.run_until_complete(task) == "ok"
    assert received[0].get("context") is ctx


def test_task_factory_and_name(loop):
    def factory(lp, coro, **kwargs):
        return asyncio.Task(coro, loop=lp, **kwargs)

    loop.set_task_factory(factory)

    async def coro():
        pass

    task = loop.create_task(coro(), name="named")
    assert task.get_name() == "named"
    loop.run_until_complete(task)


def test_set_task_factory_none_restores_default(loop):
    loop.set_task_factory(lambda lp, coro, **kw: asyncio.Task(coro, loop=lp, **kw))
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None

    async def coro():
        return 2

    assert loop.run_until_complete(coro()) == 2


@pytest.mark.parametrize("bad", [1, "factory", object()], ids=["int", "str", "object"])
def test_set_task_factory_non_callable_is_type_error(loop, bad):
    with pytest.raises(TypeError):
        loop.set_task_factory(bad)
    assert loop.get_task_factory() is None


# -- asyncio primitives on the loop ------------------------------------------------------------


def test_gather(loop):
    async def child(i):
        await asyncio.sleep(0.001 * (5 - i))
        return i

    async def main():
        return await asyncio.gather(*(child(i) for i in range(5)))

    assert loop.run_until_complete(main()) == [0, 1, 2, 3, 4]


def test_gather_return_exceptions(loop):
    async def ok():
        return 1

    async def bad():
        raise ValueError("bad")

    async def main():
        return await asyncio.gather(ok(), bad(), return_exceptions=True)

    res = loop.run_until_complete(main())
    assert res[0] == 1
    assert isinstance(res[1], ValueError)


def test_wait_for_times_out(loop):
    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        t0 = loop.time()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slow(), 0.02)
        return loop.time() - t0

    elapsed = loop.run_until_complete(main())
    assert cancelled == [True]
    assert 0.015 <= elapsed < 1.0


def test_wait_for_result_in_time(loop):
    async def main():
        return await asyncio.wait_for(asyncio.sleep(0.001, "value"), 1)

    assert loop.run_until_complete(main()) == "value"


def test_asyncio_timeout(loop):
    async def main():
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02) as expired_cm:
                await asyncio.sleep(10)
        elapsed = loop.time() - t0
        async with asyncio.timeout(1) as cm:
            await asyncio.sleep(0)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout_at(loop.time() + 0.01) as at_cm:
                await asyncio.sleep(10)
        return elapsed, expired_cm.expired(), cm.expired(), at_cm.expired()

    elapsed, expired, not_expired, at_expired = loop.run_until_complete(main())
    assert 0.015 <= elapsed < 1.0
    assert (expired, not_expired, at_expired) == (True, False, True)


def test_asyncio_timeout_reschedule(loop):
    async def main():
        async with asyncio.timeout(None) as cm:
            cm.reschedule(loop.time() + 0.02)
            assert cm.when() is not None
            await asyncio.sleep(10)

    with pytest.raises(TimeoutError):
        loop.run_until_complete(main())


def test_task_group(loop):
    async def child(i):
        await asyncio.sleep(0.001)
        return i * i

    async def main():
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(child(i)) for i in range(5)]
        return [t.result() for t in tasks]

    assert loop.run_until_complete(main()) == [0, 1, 4, 9, 16]


def test_task_group_error_cancels_siblings(loop):
    cancelled = []

    async def sibling():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def failing():
        await asyncio.sleep(0.001)
        raise ValueError("fail")

    async def main():
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sibling())
            tg.create_task(failing())

    with pytest.raises(ExceptionGroup) as info:
        loop.run_until_complete(main())
    assert isinstance(info.value.exceptions[0], ValueError)
    assert cancelled == [True]


def test_sleep_zero_yields_to_other_tasks(loop):
    order = []

    async def worker(name):
        for i in range(3):
            order.append((name, i))
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(worker("a"), worker("b"))

    loop.run_until_complete(main())
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]


def test_sleep_positive_waits_and_returns_result(loop):
    async def main():
        t0 = loop.time()
        result = await asyncio.sleep(0.03, result="slept")
        return result, loop.time() - t0

    result, elapsed = loop.run_until_complete(main())
    assert result == "slept"
    assert 0.025 <= elapsed < 1.0


def test_sleeps_finish_in_deadline_order(loop):
    order = []

    async def sleeper(d):
        await asyncio.sleep(d)
        order.append(d)

    async def main():
        await asyncio.gather(*(sleeper(d) for d in (0.03, 0.01, 0.02, 0)))

    loop.run_until_complete(main())
    assert order == [0, 0.01, 0.02, 0.03]


def test_current_task(loop):
    async def main():
        return asyncio.current_task(), asyncio.current_task(loop)

    task = loop.create_task(main())
    a, b = loop.run_until_complete(task)
    assert a is task and b is task
    assert asyncio.current_task(loop) is None


def test_current_task_in_plain_callback_is_none(loop):
    seen = []
    loop.call_soon(lambda: seen.append(asyncio.current_task()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [None]


def test_all_tasks(loop):
    async def sleeper():
        await asyncio.sleep(10)

    async def main():
        others = [loop.create_task(sleeper()) for _ in range(3)]
        await asyncio.sleep(0)
        current = asyncio.all_tasks()
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        return others, current, asyncio.all_tasks()

    main_task = loop.create_task(main())
    others, during, after = loop.run_until_complete(main_task)
    assert during == set(others) | {main_task}
    assert after == {main_task}
    assert asyncio.all_tasks(loop) == set()


def test_cancel_a_sleeping_task(loop):
    async def sleeper():
        await asyncio.sleep(10)

    async def main():
        task = loop.create_task(sleeper())
        await asyncio.sleep(0)
        assert task.cancel("why") is True
        with pytest.raises(asyncio.CancelledError):
            await task
        return task

    t0 = loop.time()
    task = loop.run_until_complete(main())
    assert task.cancelled()
    assert loop.time() - t0 < 1.0


def test_cancel_message_reaches_the_coroutine(loop):
    seen = []

    async def sleeper():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError as exc:
            seen.append(exc.args)
            raise

    async def main():
        task = loop.create_task(sleeper())
        await asyncio.sleep(0)
        task.cancel("the-message")
        await asyncio.gather(task, return_exceptions=True)

    loop.run_until_complete(main())
    assert seen == [("the-message",)]


def test_task_can_suppress_cancellation(loop):
    async def stubborn():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()
            return "survived"

    async def main():
        task = loop.create_task(stubborn())
        await asyncio.sleep(0)
        task.cancel()
        return await task

    assert loop.run_until_complete(main()) == "survived"


def test_shield(loop):
    async def inner():
        await asyncio.sleep(0.01)
        return "inner-done"

    async def main():
        inner_task = loop.create_task(inner())
        outer = asyncio.ensure_future(asyncio.shield(inner_task))
        await asyncio.sleep(0)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        return await inner_task

    assert loop.run_until_complete(main()) == "inner-done"


def test_cancel_run_until_complete_task_from_callback(loop):
    async def sleeper():
        await asyncio.sleep(10)

    task = loop.create_task(sleeper())
    loop.call_later(0.01, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert task.cancelled()


def test_wait_first_completed(loop):
    async def main():
        fast = loop.create_task(asyncio.sleep(0.001, "fast"))
        slow = loop.create_task(asyncio.sleep(10, "slow"))
        done, pending = await asyncio.wait({fast, slow}, return_when=asyncio.FIRST_COMPLETED)
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
        return done, pending, fast, slow

    done, pending, fast, slow = loop.run_until_complete(main())
    assert done == {fast}
    assert pending == {slow}


def test_as_completed(loop):
    async def main():
        aws = [asyncio.sleep(d, d) for d in (0.02, 0.0, 0.01)]
        return [await f for f in asyncio.as_completed(aws)]

    assert loop.run_until_complete(main()) == [0.0, 0.01, 0.02]


def test_queue_producer_consumer(loop):
    async def main():
        q = asyncio.Queue(maxsize=2)
        got = []

        async def producer():
            for i in range(20):
                await q.put(i)
            await q.put(None)

        async def consumer():
            while (item := await q.get()) is not None:
                got.append(item)

        await asyncio.gather(producer(), consumer())
        return got

    assert loop.run_until_complete(main()) == list(range(20))


def test_event_and_lock(loop):
    async def main():
        ev = asyncio.Event()
        lock = asyncio.Lock()
        order = []

        async def waiter(i):
            await ev.wait()
            async with lock:
                order.append(i)
                await asyncio.sleep(0)

        tasks = [loop.create_task(waiter(i)) for i in range(3)]
        await asyncio.sleep(0)
        ev.set()
        await asyncio.gather(*tasks)
        return order

    assert loop.run_until_complete(main()) == [0, 1, 2]


def test_unretrieved_task_exception_is_reported(loop, expect_exception_handler):
    async def fail():
        raise ZeroDivisionError()

    task = loop.create_task(fail())
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert task.done()
    del task
    gc.collect()
    assert len(expect_exception_handler) == 1
    ctx = expect_exception_handler[0]
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert "never retrieved" in ctx["message"]


def test_pending_task_destroyed_is_reported(loop, expect_exception_handler):
    async def forever():
        await asyncio.sleep(10)

    task = loop.create_task(forever())
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.close()
    del task
    gc.collect()
    assert len(expect_exception_handler) == 1
    assert "destroyed but it is pending" in expect_exception_handler[0]["message"]


def test_await_future_of_another_loop_fails(loop, new_loop):
    other = new_loop()

    async def main():
        fut = other.create_future()
        with pytest.raises(RuntimeError):
            await fut

    loop.run_until_complete(main())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in Python 3.12")
def test_eager_task_factory(loop):
    order = []

    async def child():
        order.append("child-start")
        await asyncio.sleep(0)
        return "child"

    async def main():
        task = loop.create_task(child())
        order.append("after-create")
        return await task

    loop.set_task_factory(asyncio.eager_task_factory)
    assert loop.run_until_complete(main()) == "child"
    assert order == ["child-start", "after-create"]
